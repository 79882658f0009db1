"""A real ``coda-lite serve`` for a test module: started on a free port, stopped after.

    with coda_service(home, config="telemetry:\\n  health_interval: 0.5\\n") as service:
        r = service.turn("My name is Ada.", session_id="s1")       # POST /v1/turns
        service.metric('coda_conversations_total{status="ok"}')    # summed samples
        service.component("llm")["status"]                          # from /health
        service.eventually(lambda: service.metric("coda_...") >= 1, what="...")

``otlp=True`` starts a real OTLP/HTTP receiver and points the service's exporter at it
(``service.spans(trace_id)``). It waits for ``/health/ready`` (models loaded, first health
check passed); if the process dies or never gets ready, the error carries the tail of its log,
and so does any :meth:`Service.eventually` that times out.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
import yaml

from tests.otlp_receivers import HttpReceiver
from tests.prometheus_harness import ManagedProcess, http_json, wait_until
from tests.support import free_port

START_TIMEOUT_S = 120.0
T = TypeVar("T")

__all__ = ["Service", "coda_service"]


@dataclass
class Service:
    """One running ``coda-lite serve`` and the few things every service test asks of it."""

    base: str
    home: Path
    process: ManagedProcess
    receiver: HttpReceiver | None = None

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def turn(
        self,
        text: str | None = None,
        *,
        timeout: float = 120,
        headers: Mapping[str, str] | None = None,
        **body: Any,
    ) -> requests.Response:
        """``POST /v1/turns`` with ``text`` (when given) and the other fields as the body."""
        payload = {"text": text, **body} if text is not None else body
        return requests.post(
            self.url("/v1/turns"), json=payload, headers=dict(headers or {}), timeout=timeout
        )

    def get(self, path: str, *, timeout: float = 30, **kwargs: Any) -> requests.Response:
        return requests.get(self.url(path), timeout=timeout, **kwargs)

    def post(self, path: str, *, timeout: float = 30, **kwargs: Any) -> requests.Response:
        return requests.post(self.url(path), timeout=timeout, **kwargs)

    def metrics(self) -> str:
        return self.get("/metrics").text

    def metric(self, prefix: str) -> float:
        """The sum of the exposition's samples whose line starts with ``prefix``."""
        return sum(
            float(line.split()[-1])
            for line in self.metrics().splitlines()
            if line.startswith(prefix)
        )

    def health(self) -> dict[str, Any]:
        return dict(self.get("/health").json())

    def component(self, name: str) -> dict[str, Any]:
        """One component's entry in ``/health``."""
        return dict(self.health()["components"][name])

    def inject(self, component: str, fault: str) -> None:
        """Inject ``fault`` into ``component`` (the service runs with fault injection)."""
        r = self.post("/debug/faults", json={"component": component, "fault": fault})
        assert r.status_code == 202, r.text

    def eventually(
        self, check: Callable[[], T], *, timeout: float = 30, what: str = "the condition"
    ) -> T:
        """Poll ``check`` until truthy; fails early if the service died, with its log."""
        result: T = wait_until(check, timeout, what, self.process, interval=0.1)
        return result

    def spans(self, trace_id: str, count: int = 1, timeout: float = 15) -> list[Any]:
        """The receiver's spans of ``trace_id``, once at least ``count`` arrived."""
        receiver = self.receiver
        assert receiver is not None, "start the service with otlp=True"

        def mine() -> list[Any]:
            found = [s for _, s in receiver.spans() if s.trace_id.hex() == trace_id]
            return found if len(found) >= count else []

        return self.eventually(mine, timeout=timeout, what=f"{count} spans of {trace_id}")


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
    otlp: bool = False,
) -> Iterator[Service]:
    """Run ``coda-lite serve`` with ``CODA_HOME=home``; yields the :class:`Service`.

    The process is appended to ``started`` when given (to kill it from a test).
    Traces are off unless ``otlp`` (a real receiver) or ``env`` says otherwise; a ``None``
    value in ``env`` unsets a variable. ``port`` (default: a free one) lets a test restart a
    service where its clients expect it. ``launcher`` is what python runs before ``serve ...``
    (a wrapper script that sets process limits, then runs ``coda_lite``).
    """
    config_path = home / "config.yaml"
    config_path.write_text(config, encoding="utf-8")
    port = port or free_port()
    # The suite's default model (CODA_LLM_BACKEND=echo, conftest) gives way to the config file's.
    chosen = (yaml.safe_load(config) or {}).get("llm") or {}
    suite_default = {"CODA_LLM_BACKEND": None} if "backend" in chosen else {}
    with ExitStack() as stack:
        receiver = stack.enter_context(HttpReceiver()) if otlp else None
        exporter: dict[str, str | None] = {"OTEL_TRACES_EXPORTER": "none"}
        if receiver is not None:
            exporter = {
                "OTEL_TRACES_EXPORTER": None,  # exported over OTLP to the receiver
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            }
        merged: dict[str, str | None] = {
            **os.environ,
            **suite_default,
            "CODA_HOME": str(home),
            "CODA_CONFIG": str(config_path),
            **exporter,
            "HF_HUB_OFFLINE": "1",
            "CODA_DEBUG_TOKEN": None,
            **(env or {}),
        }
        full_env = {k: v for k, v in merged.items() if v is not None}
        argv = [sys.executable, *launcher, "serve", "--port", str(port)]
        if fault_injection:
            argv.append("--allow-fault-injection")
        base = f"http://127.0.0.1:{port}"
        proc = stack.enter_context(ManagedProcess(argv, home / "serve.log", env=full_env))
        if started is not None:
            started.append(proc)
        wait_until(
            lambda: http_json(f"{base}/health/ready", timeout=2)[0] == 200,
            START_TIMEOUT_S,
            "coda-lite serve /health/ready",
            proc,
            interval=0.3,
        )
        yield Service(base, home, proc, receiver)
