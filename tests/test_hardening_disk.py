"""A full disk against a real ``coda-lite serve``: health degrades first, telemetry keeps its
reserve, failed writes are counted, and a turn whose memory cannot be written still answers.

The service runs under a real file-size limit (:mod:`tests.fsize_limited`): SQLite's writes
fail with "database or disk is full" exactly as on a full disk. The disk thresholds are set
above the machine's free space, so the real free-space reading is "too low".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from coda_otel.testing import wait_until
from tests.service_harness import coda_service

LAUNCHER = Path(__file__).with_name("fsize_limited.py")
PB = 10**15  # more than any disk here: the free space reads as below both thresholds


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("coda-full-disk")
    config = (
        "tts:\n  backend: none\n"
        f"telemetry:\n  health_interval: 0.3\n  disk_low_bytes: {PB}\n"
        f"  disk_reserve_bytes: {PB}\n  snapshot_interval: 1\n"
    )
    env = {"CODA_TEST_FSIZE_BYTES": str(256 * 1024)}
    with coda_service(home, config=config, env=env, launcher=[str(LAUNCHER)]) as url:
        yield url, home


def _metric(url: str, prefix: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(prefix))


def test_low_disk_degrades_health_and_shows_on_metrics(base: tuple[str, Path]) -> None:
    url, _ = base

    def degraded() -> bool:
        health = requests.get(f"{url}/health", timeout=10)
        disk = health.json()["components"]["disk"]
        return health.status_code == 200 and disk["status"] != "healthy"

    wait_until(degraded, 10.0, what="the disk component to report low space")
    health = requests.get(f"{url}/health", timeout=10).json()
    assert health["overall_health"] == "degraded"
    assert requests.get(f"{url}/health/ready", timeout=10).status_code == 200
    assert _metric(url, "coda_disk_free_bytes ") > 0
    assert _metric(url, "coda_disk_low_bytes ") == PB
    assert _metric(url, 'coda_component_up{component="disk"}') == 0
    time.sleep(1.5)  # many more checks: reported, never restarted, never "failed"
    disk = requests.get(f"{url}/health", timeout=10).json()["components"]["disk"]
    assert disk["status"] == "unhealthy" and disk["restarts_total"] == 0, disk
    assert "below" in disk["last_heartbeat"]["last_error"]


def test_full_disk_turns_still_answer_and_telemetry_keeps_the_reserve(
    base: tuple[str, Path],
) -> None:
    url, home = base
    answered, warned = 0, []
    for n in range(60):
        facts = " ".join(f"I like fruit {n}-{i} with a long descriptive name." for i in range(20))
        r = requests.post(f"{url}/v1/turns", json={"text": facts, "session_id": f"full-{n}"},
                          timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text  # never a 502 for a memory that could not be saved
        answered += 1
        warned += r.json().get("warnings", [])
        if warned:
            break
    # SQLite reports the cut-short write as "disk I/O error" (EFBIG) or "disk is full" (ENOSPC)
    assert warned and "memory_update stage failed" in warned[0], f"no failure in {answered} turns"
    text = requests.get(f"{url}/metrics", timeout=30).text
    failed = [
        ln
        for ln in text.splitlines()
        if ln.startswith("coda_pipeline_stage_errors_total{") and "memory_update" in ln
    ]
    assert sum(float(ln.split()[-1]) for ln in failed) >= 1, failed
    reserve = 'coda_telemetry_write_failures_total{reason="reserve",writer="conversation_logs"}'
    assert _metric(url, reserve) >= answered
    assert not list((home / "pipeline_logs").glob("*.json"))  # the reserve was kept
    assert _metric(url, 'coda_telemetry_write_failures_total{reason="reserve",writer="snapshots"}')
    log = (home / "serve.log").read_text(errors="replace")
    assert log.count("conversation_logs write failed") == 1  # logged once per burst
