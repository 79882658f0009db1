"""A real Alertmanager with the committed config: inhibitions stay within one replica.

Alerts for two replicas are posted to its API; one replica's missing scrape target silences that
replica's other alerts and nobody else's, and a component the watchdog gave up on silences the
same component's "down" alert on the same replica only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.prometheus_harness import ALERTMANAGER_YML, ManagedProcess, http_json, wait_until
from tests.support import free_port, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.stack]

A, B = "10.0.0.1:8765", "10.0.0.2:8765"


def _alert(name: str, instance: str, **labels: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": "critical", "job": "coda-lite"}
        | {"instance": instance}
        | labels,
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_tool("prometheus-alertmanager")
    tmp: Path = tmp_path_factory.mktemp("alertmanager")
    port = free_port()
    argv = [
        binary,
        f"--config.file={ALERTMANAGER_YML}",
        f"--storage.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: a single instance
    ]
    base = f"http://127.0.0.1:{port}/api/v2"
    with ManagedProcess(argv, tmp / "alertmanager.log") as proc:
        wait_until(lambda: http_json(f"{base}/status", timeout=2)[0] == 200, 30, "ready", proc)
        yield base


def _states(base: str) -> dict[tuple[str, str, str], str]:
    status, alerts = http_json(f"{base}/alerts", timeout=5)
    assert status == 200, alerts
    return {_key(a): a["status"]["state"] for a in alerts}


def _key(alert: dict[str, Any]) -> tuple[str, str, str]:
    labels = alert["labels"]
    return labels["alertname"], labels["instance"], labels.get("component", "")


def _posted(
    base: str, alerts: list[dict[str, Any]], suppressed: tuple[str, str, str]
) -> dict[tuple[str, str, str], str]:
    """Post ``alerts``; every alert's state once ``suppressed`` is (the inhibitor learns of
    source alerts in the background, so a target starts out "active")."""
    status, body = http_json(f"{base}/alerts", alerts)
    assert status == 200, body

    def settled() -> dict[tuple[str, str, str], str] | None:
        states = _states(base)
        return states if states.get(suppressed) == "suppressed" else None

    return dict(wait_until(settled, 10, f"{suppressed} suppressed"))


def test_a_missing_replica_silences_only_its_own_alerts(alertmanager: str) -> None:
    alerts = [
        _alert("CodaScrapeTargetMissing", A),
        _alert("CodaComponentDown", A, component="llm"),
        _alert("CodaComponentDown", B, component="llm"),
    ]
    states = _posted(alertmanager, alerts, suppressed=("CodaComponentDown", A, "llm"))
    assert states[("CodaScrapeTargetMissing", A, "")] == "active"
    assert states[("CodaComponentDown", B, "llm")] == "active"


def test_a_failed_component_silences_its_down_alert_on_that_replica_only(
    alertmanager: str,
) -> None:
    alerts = [
        _alert("CodaComponentFailed", B, component="tts"),
        _alert("CodaComponentDown", B, component="tts"),
        _alert("CodaComponentDown", B, component="stt"),
        _alert("CodaComponentDown", "10.0.0.3:8765", component="tts"),
    ]
    states = _posted(alertmanager, alerts, suppressed=("CodaComponentDown", B, "tts"))
    assert states[("CodaComponentDown", B, "stt")] == "active"
    assert states[("CodaComponentDown", "10.0.0.3:8765", "tts")] == "active"
