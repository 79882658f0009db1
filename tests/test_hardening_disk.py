"""A full disk against a real ``coda-lite serve``: health degrades first, telemetry keeps its
reserve, failed writes are counted, and a turn whose memory cannot be written still answers;
when room returns, the memory store heals by itself.

The service runs under a real file-size limit (:mod:`tests.rlimited`): SQLite's writes
fail with "database or disk is full" exactly as on a full disk. The disk thresholds are set
above the machine's free space, so the real free-space reading is "too low".
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_harness import Service, coda_service

pytestmark = [pytest.mark.slow]

LAUNCHER = Path(__file__).with_name("rlimited.py")
PB = 10**15  # more than any disk here: the free space reads as below both thresholds


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("coda-full-disk")
    config = (
        "tts:\n  backend: none\n"
        f"telemetry:\n  health_interval: 0.3\n  disk_low_bytes: {PB}\n"
        f"  disk_reserve_bytes: {PB}\n  snapshot_interval: 1\n"
    )
    env = {"CODA_TEST_FSIZE_BYTES": str(256 * 1024)}
    with coda_service(home, config=config, env=env, launcher=[str(LAUNCHER)]) as service:
        yield service


def test_low_disk_degrades_health_and_shows_on_metrics(service: Service) -> None:
    def degraded() -> bool:
        health = service.get("/health")
        disk = health.json()["components"]["disk"]
        return health.status_code == 200 and disk["status"] != "healthy"

    service.eventually(degraded, timeout=10, what="the disk component to report low space")
    assert service.health()["overall_health"] == "degraded"
    assert service.get("/health/ready").status_code == 200
    assert service.metric("coda_disk_free_bytes ") > 0
    assert service.metric("coda_disk_low_bytes ") == PB
    assert service.metric('coda_component_up{component="disk"}') == 0
    # many more checks: degraded for a resource cause, never restarted, never "failed"
    checks = 'coda_component_check_duration_seconds_count{component="disk"}'
    before = service.metric(checks)
    service.eventually(lambda: service.metric(checks) >= before + 4, what="four more checks")
    disk = service.component("disk")
    found = (disk["status"], disk["cause"], disk["restarts_total"])
    assert found == ("degraded", "resource", 0), disk
    assert "below" in disk["last_heartbeat"]["last_error"]


def test_full_disk_turns_still_answer_and_telemetry_keeps_the_reserve(
    service: Service,
) -> None:
    answered, warned = 0, []
    for n in range(60):
        facts = " ".join(f"I like fruit {n}-{i} with a long descriptive name." for i in range(20))
        r = service.turn(facts, session_id=f"full-{n}", timeout=60)
        assert r.status_code == 200, r.text  # never a 502 for a memory that could not be saved
        answered += 1
        warned += r.json().get("warnings", [])
        if warned:
            break
    # SQLite reports the cut-short write as "disk I/O error" (EFBIG) or "disk is full" (ENOSPC)
    assert warned and "memory_update stage failed" in warned[0], f"no failure in {answered} turns"
    # the store's writes fail for lack of room: degraded for that cause, never restarted
    store = service.eventually(
        lambda: (c := service.component("memory_store"))["status"] == "degraded" and c,
        what="the memory store to be degraded by the full disk",
    )
    assert store["cause"] == "resource" and store["restarts_total"] == 0, store
    assert "no restart frees it" in store["reason"], store
    text = service.metrics()
    failed = [
        ln
        for ln in text.splitlines()
        if ln.startswith("coda_pipeline_stage_errors_total{") and "memory_update" in ln
    ]
    assert sum(float(ln.split()[-1]) for ln in failed) >= 1, failed
    reserve = 'coda_telemetry_write_failures_total{reason="reserve",writer="conversation_logs"}'
    assert service.metric(reserve) >= answered
    assert not list((service.home / "pipeline_logs").glob("*.json"))  # the reserve was kept
    snapshots = 'coda_telemetry_write_failures_total{reason="reserve",writer="snapshots"}'
    assert service.metric(snapshots)
    log = (service.home / "serve.log").read_text(errors="replace")
    assert log.count("conversation_logs write failed") == 1  # logged once per burst


def test_failed_memory_writes_are_counted_logged_once_and_heal_when_room_returns(
    service: Service,
) -> None:
    failures = 'coda_memory_write_failures_total{reason="resource"}'
    for n in range(60):  # past the file-size limit (already, after the test above)
        if service.metric(failures) >= 2:
            break
        facts = " ".join(f"I like tree {n}-{i} with a long descriptive name." for i in range(20))
        assert service.turn(facts, session_id=f"fill-{n}", timeout=60).status_code == 200
    assert service.metric(failures) >= 2
    assert service.metric('coda_memory_write_failures_total{reason="error"}') == 0
    log = (service.home / "serve.log").read_text(errors="replace")
    first = [ln for ln in log.splitlines() if "memory_store write failed" in ln]
    assert len(first) == 1 and "cause: resource" in first[0], first  # once for the burst

    # room returns: the running service's kernel file-size limit is lifted
    assert service.process.proc is not None
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.prlimit(service.process.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
    told = service.turn("I like the colour teal.", session_id="room-again", timeout=60)
    assert told.status_code == 200 and not told.json().get("warnings"), told.text
    store = service.eventually(
        lambda: (c := service.component("memory_store"))["status"] == "healthy" and c,
        what="the memory store to heal once a write goes through",
    )
    assert store["restarts_total"] == 0, store  # re-probed, never restarted, no manual reset
    asked = service.turn("What colour do I like?", session_id="room-again", timeout=60)
    assert "teal" in asked.json()["response"].lower(), asked.text
    log = (service.home / "serve.log").read_text(errors="replace")
    assert "memory_store writes work again after" in log
