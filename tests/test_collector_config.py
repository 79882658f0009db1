"""The OpenTelemetry Collector's config (deploy/otel-collector/config.yaml), checked on paper.

The Collector binary does not run here, so its config is read as the Collector would read it:
every pipeline names only components the file defines (and every defined one is used), the
processors run in a safe order, and the tail-sampling policies keep every error turn, every
interrupted turn and every turn over its latency budget, plus a configurable share of the rest.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.prometheus_harness import ALERTS_YML, COMPOSE_YML, DEPLOY, alert_rules, load_yaml

pytestmark = [pytest.mark.stack]

CONFIG = DEPLOY / "otel-collector" / "config.yaml"
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
_ENV_REF = re.compile(r"\$\{env:(\w+)(?::-([^}]*))?\}")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return dict(load_yaml(CONFIG))


def _kind(component_id: str) -> str:
    """``otlp/jaeger`` -> ``otlp``: the component type before the optional name."""
    return component_id.split("/", 1)[0]


def test_pipelines_reference_only_defined_components(config: dict[str, Any]) -> None:
    defined = {section: set(config.get(section) or {}) for section in SECTIONS}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    service = config["service"]
    used["extensions"] = set(service.get("extensions", []))
    for name, pipeline in service["pipelines"].items():
        assert _kind(name) in {"traces", "metrics", "logs"}, name
        assert pipeline["receivers"] and pipeline["exporters"], name
        for section in ("receivers", "processors", "exporters"):
            used[section] |= set(pipeline.get(section, []))
    for section in SECTIONS:
        assert used[section] <= defined[section], f"undefined {section}"
        assert defined[section] <= used[section], f"{section} defined but never used"


def test_processors_run_in_a_safe_order(config: dict[str, Any]) -> None:
    """memory_limiter first (refuse before running out of memory), batch last (after the
    sampling decision), tail_sampling on the whole traces pipeline."""
    processors = config["service"]["pipelines"]["traces"]["processors"]
    assert [_kind(p) for p in processors] == ["memory_limiter", "tail_sampling", "batch"]
    limiter = config["processors"]["memory_limiter"]
    assert limiter["check_interval"] and 0 < limiter["limit_percentage"] <= 90


def _policies(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sampling = config["processors"]["tail_sampling"]
    return {p["name"]: p for p in sampling["policies"]}


def _default(value: str) -> str:
    """The default of a ``${env:NAME:-default}`` reference (the value itself otherwise)."""
    match = _ENV_REF.fullmatch(str(value))
    return str(value) if match is None else str(match.group(2))


def test_tail_sampling_keeps_errors_interruptions_and_slow_turns(config: dict[str, Any]) -> None:
    policies = _policies(config)
    for policy in policies.values():  # each policy's settings sit under its type
        assert set(policy) == {"name", "type", policy["type"]}, policy["name"]
    by_type = {p["type"]: p for p in policies.values()}
    assert by_type["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    interrupted = by_type["string_attribute"]["string_attribute"]
    assert interrupted["key"] == "coda.turn.end_reason"
    assert "interrupted" in interrupted["values"]
    assert int(_default(by_type["latency"]["latency"]["threshold_ms"])) > 0
    share = by_type["probabilistic"]["probabilistic"]["sampling_percentage"]
    assert 0 < float(_default(share)) < 100
    assert set(by_type) == {"status_code", "string_attribute", "latency", "probabilistic"}


def test_the_turn_budget_is_the_sum_of_the_stage_budgets(config: dict[str, Any]) -> None:
    """The default latency threshold equals the stage budgets the alert rules hold."""
    [budget] = [
        r for r in alert_rules(ALERTS_YML) if r.get("record", "").endswith("budget_seconds")
    ]
    stage_seconds = [float(v) for v in re.findall(r"vector\(([\d.]+)\)", budget["expr"])]
    assert len(stage_seconds) == 5
    latency = _policies(config)["slow"]["latency"]["threshold_ms"]
    assert int(_default(latency)) == round(sum(stage_seconds) * 1000)


def test_every_variable_the_config_reads_has_a_default_and_compose_sets_it(
    config: dict[str, Any],
) -> None:
    text = CONFIG.read_text(encoding="utf-8")
    refs = {name: default for name, default in _ENV_REF.findall(text)}
    assert all(default != "" for default in refs.values()), refs
    compose = load_yaml(COMPOSE_YML)["services"]["otel-collector"]
    assert set(refs) - set(compose["environment"]) == {"COLLECTOR_LISTEN_HOST"}


def test_otlp_in_on_the_standard_ports_and_out_to_jaeger(config: dict[str, Any]) -> None:
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    [exporter] = config["service"]["pipelines"]["traces"]["exporters"]
    assert _kind(exporter) == "otlp"
    endpoint = config["exporters"][exporter]["endpoint"]
    assert _default(endpoint) == "jaeger:4317"
