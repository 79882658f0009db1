"""The dashboards and alerts against a real Prometheus scraping a real ``coda-lite serve``.

One module-scoped stack: the app (``python -m coda_lite serve --allow-fault-injection``) serves a
few turns; the Debian ``prometheus`` scrapes it every second with the committed prometheus.yml
(target and intervals rewritten) and a copy of the alert rules whose ``for`` is cut to 0s. Every
dashboard expression must return data, every rule must evaluate, and an injected fault must
make the component-down alert fire. Both processes are killed when the module ends.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.prometheus_harness import (
    ALERTS_YML,
    SCRAPE_JOB,
    ManagedProcess,
    PanelQuery,
    PrometheusAPI,
    alert_rules,
    dashboard_queries,
    http_json,
    prometheus_argv,
    prometheus_test_config,
    rules_with_short_for,
    variable_queries,
    wait_until,
)
from tests.support import free_port, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.stack]

TURNS = [
    ("Remember that my favourite colour is green.", "s1"),
    ("What is my favourite colour?", "s1"),
    ("What is my favourite colour?", "s2"),  # a repeat: the caches get a hit
    ("Tell me something about the weather.", "s2"),
]
APP_START_TIMEOUT = 180  # loads the embedding model and the speech models
FAULT_TIMEOUT = 120  # several watchdog check intervals


@dataclass
class Stack:
    app_url: str
    prom: PrometheusAPI
    app: ManagedProcess
    prometheus: ManagedProcess


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_tool("prometheus")
    require_tool("espeak-ng")
    tmp = tmp_path_factory.mktemp("stack")
    app_port, prom_port = free_port(), free_port()
    env = dict(
        os.environ,
        CODA_HOME=str(tmp / "coda-home"),
        OTEL_TRACES_EXPORTER="none",
        HF_HUB_OFFLINE="1",
    )
    app_argv = [sys.executable, "-m", "coda_lite", "serve", "--host", "127.0.0.1"]
    app_argv += ["--port", str(app_port), "--allow-fault-injection"]
    rules = rules_with_short_for(ALERTS_YML, tmp / "alerts.yml")
    config = prometheus_test_config(
        tmp / "prometheus.yml", target=f"127.0.0.1:{app_port}", rules=rules
    )
    prom_argv = prometheus_argv(prometheus_bin, config, tmp, prom_port)
    app_url = f"http://127.0.0.1:{app_port}"
    with (
        ManagedProcess(app_argv, tmp / "app.log", env=env) as app,
        ManagedProcess(prom_argv, tmp / "prometheus.log") as prometheus,
    ):
        prom = PrometheusAPI(f"http://127.0.0.1:{prom_port}")
        wait_until(
            lambda: http_json(f"{app_url}/health/live", timeout=2)[0] == 200,
            APP_START_TIMEOUT,
            "the app's /health/live",
            app,
        )
        wait_until(prom.ready, 30, "prometheus ready", prometheus)
        wait_until(
            lambda: prom.query(f'up{{job="{SCRAPE_JOB}"}} == 1'), 30, "a scrape", app, prometheus
        )
        for text, session in TURNS:
            status, body = http_json(
                f"{app_url}/v1/turns", {"text": text, "session_id": session}, timeout=120
            )
            assert status == 200, body
        wait_until(
            lambda: prom.query(
                f'sum(coda_conversations_total{{job="{SCRAPE_JOB}"}}) >= {len(TURNS)}'
            ),
            30,
            "the turns to be scraped",
            app,
            prometheus,
        )
        # Enough samples after the turns for every rate() window, and rules evaluated.
        wait_until(
            lambda: (
                prom.query(f'count_over_time(up{{job="{SCRAPE_JOB}"}}[1m]) >= 8')
                and prom.query("coda:pipeline_stage_duration_seconds:p95_5m")
            ),
            60,
            "more scrapes and a rule evaluation",
            app,
            prometheus,
        )
        yield Stack(app_url, prom, app, prometheus)


QUERIES = dashboard_queries()


@pytest.mark.parametrize("query", QUERIES, ids=[q.label for q in QUERIES])
def test_dashboard_expression_returns_data(stack: Stack, query: PanelQuery) -> None:
    result = stack.prom.query(query.expr)
    assert result, f"no data for {query.expr}"


EXEMPLAR_QUERIES = [q for q in QUERIES if q.exemplar]
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize("query", EXEMPLAR_QUERIES, ids=[q.label for q in EXEMPLAR_QUERIES])
def test_latency_exemplars_carry_trace_ids(stack: Stack, query: PanelQuery) -> None:
    """Prometheus (exemplar storage on) kept the stage spans' trace ids that Grafana links."""
    exemplars = stack.prom.exemplars(query.expr)
    trace_ids = {ex["labels"].get("trace_id", "") for ex in exemplars}
    assert trace_ids, f"no exemplars for {query.expr}"
    assert all(TRACE_ID.match(t) for t in trace_ids), trace_ids


@pytest.mark.parametrize(
    ("dashboard", "variable", "selector", "label"),
    variable_queries(),
    ids=[f"{d}:${v}" for d, v, _, _ in variable_queries()],
)
def test_dashboard_variable_has_values(
    stack: Stack, dashboard: str, variable: str, selector: str, label: str
) -> None:
    assert stack.prom.label_values(label, selector), f"{dashboard}: ${variable} has no values"


def test_every_rule_evaluates_without_error(stack: Stack) -> None:
    for rule in alert_rules():
        stack.prom.query(rule["expr"])  # raises on a query error
    loaded = stack.prom.rule_health()
    assert len(loaded) == len(alert_rules())
    assert [(r["name"], r.get("lastError")) for r in loaded if r["health"] == "err"] == []


def test_healthy_stack_fires_no_component_alert(stack: Stack) -> None:
    firing = [a["labels"]["alertname"] for a in stack.prom.alerts() if a["state"] == "firing"]
    assert not {"CodaComponentDown", "CodaComponentFailed", "CodaScrapeTargetMissing"} & set(firing)


def test_injected_fault_fires_the_component_down_alert(stack: Stack) -> None:
    """Runs last: it breaks the llm component of the shared stack."""
    status, body = http_json(
        f"{stack.app_url}/debug/faults", {"component": "llm", "fault": "crash"}
    )
    assert status in {200, 202}, body

    def component_down_firing() -> list[dict[str, object]]:
        return [
            a
            for a in stack.prom.alerts()
            if a["labels"]["alertname"] == "CodaComponentDown"
            and a["labels"].get("component") == "llm"
            and a["state"] == "firing"
        ]

    alert = wait_until(
        component_down_firing, FAULT_TIMEOUT, "CodaComponentDown{component=llm}", stack.app
    )[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == SCRAPE_JOB
    assert "llm" in alert["annotations"]["summary"]
