"""Supervision settings: TelemetryConfig keys that tune the watchdog and the leak detector."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from coda_lite.config import ConfigError, TelemetryConfig, load_config
from coda_otel.health.leak import DEFAULT_SLOPE_THRESHOLD, LeakDetector
from coda_otel.health.watchdog import CodaWatchdog

WATCHDOG_KEYS = ("failure_threshold", "max_restarts", "restart_period")
LEAK_KEYS = {"leak_window": "window", "leak_min_samples": "min_samples",
             "leak_slope_bytes_per_s": "slope_threshold_bytes_per_s"}  # fmt: skip


def defaults(cls: type) -> dict[str, Any]:
    return {k: p.default for k, p in inspect.signature(cls).parameters.items()}


def test_defaults_are_the_watchdog_and_leak_detector_defaults() -> None:
    tel = TelemetryConfig()
    watchdog, leak = defaults(CodaWatchdog), defaults(LeakDetector)
    for key in WATCHDOG_KEYS:
        assert getattr(tel, key) == watchdog[key], key
    for key, kwarg in LEAK_KEYS.items():
        assert getattr(tel, key) == leak[kwarg], key
    assert tel.leak_slope_bytes_per_s == DEFAULT_SLOPE_THRESHOLD
    assert tel.restart_on_leak is leak["restart_on_leak"] is False


def test_yaml_and_environment_tune_supervision(tmp_path: Path) -> None:
    cfg = tmp_path / "coda.yaml"
    cfg.write_text(
        "telemetry:\n  failure_threshold: 3\n  max_restarts: 5\n  restart_period: 120\n"
        "  leak_window: 30\n  leak_min_samples: 6\n"
    )
    env = {"CODA_HOME": str(tmp_path), "CODA_TELEMETRY_RESTART_ON_LEAK": "yes",
           "CODA_TELEMETRY_LEAK_SLOPE_BYTES_PER_S": "65536"}  # fmt: skip
    tel = load_config(cfg, env=env).telemetry
    assert (tel.failure_threshold, tel.max_restarts, tel.restart_period) == (3, 5, 120.0)
    assert (tel.leak_window, tel.leak_min_samples, tel.leak_slope_bytes_per_s) == (30, 6, 65536.0)
    assert tel.restart_on_leak is True
    # the values are ones the watchdog and detector accept
    CodaWatchdog([], **{k: getattr(tel, k) for k in WATCHDOG_KEYS})
    LeakDetector(**{kw: getattr(tel, k) for k, kw in LEAK_KEYS.items()},
                 restart_on_leak=tel.restart_on_leak)  # fmt: skip


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CODA_TELEMETRY_FAILURE_THRESHOLD": "0"}, "telemetry.failure_threshold"),
        ({"CODA_TELEMETRY_MAX_RESTARTS": "-1"}, "telemetry.max_restarts"),
        ({"CODA_TELEMETRY_RESTART_PERIOD": "0"}, "telemetry.restart_period"),
        ({"CODA_TELEMETRY_LEAK_WINDOW": "5"}, "telemetry.leak_window"),
        ({"CODA_TELEMETRY_LEAK_MIN_SAMPLES": "2"}, "telemetry.leak_min_samples"),
        ({"CODA_TELEMETRY_LEAK_SLOPE_BYTES_PER_S": "-3"}, "telemetry.leak_slope_bytes_per_s"),
        ({"CODA_TELEMETRY_RESTART_ON_LEAK": "maybe"}, "expected true/false"),
    ],
)
def test_unusable_supervision_settings_are_named(
    env: dict[str, str], needle: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(env={"CODA_HOME": str(tmp_path), **env})
