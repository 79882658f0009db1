"""A real ``coda-lite serve`` for a test module: started on a free port, stopped after.

    with coda_service(home, config="telemetry:\\n  health_interval: 0.5\\n") as base:
        requests.post(f"{base}/v1/turns", json={"text": "hi"})

It waits for ``/health/ready`` (models loaded, first health check passed); if the process
dies or never gets ready, the error carries the tail of its log.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.prometheus_harness import ManagedProcess, http_json, wait_until
from tests.support import free_port

START_TIMEOUT_S = 120.0


@contextmanager
def coda_service(
    home: Path,
    *,
    config: str = "",
    env: Mapping[str, str | None] | None = None,
    started: list[ManagedProcess] | None = None,
    fault_injection: bool = True,
    port: int | None = None,
    launcher: Sequence[str] = ("-m", "coda_lite"),
) -> Iterator[str]:
    """Run ``coda-lite serve`` with ``CODA_HOME=home``; yields its base URL.

    The process is appended to ``started`` when given (to kill it from a test).
    Traces are off unless ``env`` says otherwise; a ``None`` value in ``env`` unsets a variable.
    ``port`` (default: a free one) lets a test restart a service where its clients expect it.
    ``launcher`` is what python runs before ``serve ...`` (a wrapper script that sets process
    limits, then runs ``coda_lite``).
    """
    config_path = home / "config.yaml"
    config_path.write_text(config, encoding="utf-8")
    port = port or free_port()
    # The suite's default model (CODA_LLM_BACKEND=echo, conftest) gives way to the config file's.
    chosen = (yaml.safe_load(config) or {}).get("llm") or {}
    suite_default = {"CODA_LLM_BACKEND": None} if "backend" in chosen else {}
    merged: dict[str, str | None] = {
        **os.environ,
        **suite_default,
        "CODA_HOME": str(home),
        "CODA_CONFIG": str(config_path),
        "OTEL_TRACES_EXPORTER": "none",
        "HF_HUB_OFFLINE": "1",
        "CODA_DEBUG_TOKEN": None,
        **(env or {}),
    }
    full_env = {k: v for k, v in merged.items() if v is not None}
    argv = [sys.executable, *launcher, "serve", "--port", str(port)]
    if fault_injection:
        argv.append("--allow-fault-injection")
    base = f"http://127.0.0.1:{port}"
    with ManagedProcess(argv, home / "serve.log", env=full_env) as proc:
        if started is not None:
            started.append(proc)
        wait_until(
            lambda: http_json(f"{base}/health/ready", timeout=2)[0] == 200,
            START_TIMEOUT_S,
            "coda-lite serve /health/ready",
            proc,
            interval=0.3,
        )
        yield base
