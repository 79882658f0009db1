"""The dashboard stack's files, checked by the real tools and against each other.

promtool and amtool check the Prometheus and Alertmanager configs and run the alert unit tests;
the Grafana dashboards name only provisioned datasources and only variables they define, and
select every series by the $job and $instance variables. The compose file: test_stack_compose.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.prometheus_harness import (
    ALERTMANAGER_YML,
    ALERTS_TEST_YML,
    ALERTS_YML,
    DASHBOARD_UIDS,
    DASHBOARDS,
    DATASOURCES_DIR,
    GRAFANA_BUILTINS,
    PROMETHEUS_YML,
    REPO,
    SCRAPE_JOB,
    alert_rules,
    iter_panels,
    load_dashboards,
    load_yaml,
    template_variables,
)
from tests.support import require_tool

pytestmark = [pytest.mark.stack]

REQUIRED_ALERTS = {
    "CodaComponentDown",
    "CodaComponentFlapping",
    "CodaMemoryLeakSuspected",
    "CodaStageLatencyHigh",
    "CodaCacheHitRatioLow",
    "CodaScrapeTargetMissing",
    "CodaSpansDropped",
}


def run_tool(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{output}"
    return output


# --- Prometheus, Alertmanager ---------------------------------------------------------------


def test_promtool_check_config_loads_the_rules() -> None:
    output = run_tool(require_tool("promtool"), "check", "config", str(PROMETHEUS_YML))
    assert "SUCCESS: 1 rule files found" in output
    assert "SUCCESS" in output and "FAILED" not in output


def test_promtool_check_rules() -> None:
    output = run_tool(require_tool("promtool"), "check", "rules", str(ALERTS_YML))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_promtool_unit_tests_pass() -> None:
    output = run_tool(require_tool("promtool"), "test", "rules", str(ALERTS_TEST_YML))
    assert "SUCCESS" in output


def test_amtool_check_config() -> None:
    output = run_tool(require_tool("amtool"), "check-config", str(ALERTMANAGER_YML))
    assert "SUCCESS" in output


def test_inhibitions_stay_within_one_replica() -> None:
    """One replica's missing target must not silence another replica's alerts."""
    rules = load_yaml(ALERTMANAGER_YML)["inhibit_rules"]
    assert rules
    for rule in rules:
        assert "instance" in rule.get("equal", []), rule["source_matchers"]


def test_prometheus_scrapes_the_app_and_sends_to_alertmanager() -> None:
    doc = load_yaml(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    targets = [t for sc in jobs[SCRAPE_JOB]["static_configs"] for t in sc["targets"]]
    assert targets == ["app:8765"]
    am_targets = [
        t
        for am in doc["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert am_targets == ["alertmanager:9093"]


def test_every_alert_has_severity_summary_description_runbook() -> None:
    alerts = [rule for rule in alert_rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} >= REQUIRED_ALERTS
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert len(rule["annotations"].get(key, "").split()) >= 3, (rule["alert"], key)
        assert f'job="{SCRAPE_JOB}"' in rule["expr"] or "coda:" in rule["expr"], rule["alert"]
        # Alerts fire per replica: the summary names it.
        assert "$labels.instance" in rule["annotations"]["summary"], rule["alert"]


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST_YML)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules() if "alert" in rule}
    assert alerts - fired == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested staying quiet"


# --- Grafana -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def datasources() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(DATASOURCES_DIR.glob("*.y*ml")):
        for ds in load_yaml(path)["datasources"]:
            out[ds["uid"]] = ds
    return out


def _datasource_uids(node: Any) -> set[str]:
    """Every datasource uid named anywhere in a dashboard (panels, targets, variables)."""
    found: set[str] = set()
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") != "grafana":
            found.add(ds["uid"])
        elif isinstance(ds, str):
            found.add(ds)
        for value in node.values():
            found |= _datasource_uids(value)
    elif isinstance(node, list):
        for value in node:
            found |= _datasource_uids(value)
    return found


def test_every_datasource_a_dashboard_names_is_provisioned(
    datasources: dict[str, dict[str, Any]],
) -> None:
    for name, dashboard in load_dashboards().items():
        missing = _datasource_uids(dashboard) - set(datasources)
        assert missing == set(), f"{name} names unprovisioned datasources"


def test_exemplars_link_to_the_jaeger_datasource(datasources: dict[str, dict[str, Any]]) -> None:
    assert datasources["jaeger"]["type"] == "jaeger"
    prometheus = datasources["prometheus"]
    assert prometheus["type"] == "prometheus"
    links = prometheus["jsonData"]["exemplarTraceIdDestinations"]
    assert [(link["name"], datasources[link["datasourceUid"]]["type"]) for link in links] == [
        ("trace_id", "jaeger")
    ]


def test_four_dashboards_with_stable_uids() -> None:
    dashboards = load_dashboards()
    assert {d["uid"] for d in dashboards.values()} == DASHBOARD_UIDS
    assert len(dashboards) == len(DASHBOARD_UIDS)


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS.glob("*.json")))
def test_dashboard_json_is_sane(name: str) -> None:
    dashboard = load_dashboards()[name]
    assert dashboard["title"] and dashboard.get("id") is None
    panels = list(iter_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = set(template_variables(dashboard)) | set(GRAFANA_BUILTINS)
    queries = 0
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] in {"row", "text"}:
            continue
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.strip(), panel["title"]
            used = set(re.findall(r"\$\{?(\w+)", expr))
            assert used <= variables, f"{panel['title']}: undefined {used - variables}"
            queries += 1
    assert queries >= 6


_SELECTOR = re.compile(r"(\w+)\{([^}]*)\}")
REPLICA_FILTER = 'job=~"$job", instance=~"$instance"'


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS.glob("*.json")))
def test_every_dashboard_selects_replicas_by_job_and_instance(name: str) -> None:
    """Every series a panel reads is filtered by the $job and $instance variables (all but
    Prometheus's own ALERTS), so one dashboard serves one replica or many."""
    dashboard = load_dashboards()[name]
    variables = template_variables(dashboard)
    assert variables["job"]["includeAll"] is False  # "All" jobs would pull in Prometheus's own
    assert variables["job"]["current"]["value"] == SCRAPE_JOB
    assert variables["instance"]["includeAll"] and variables["instance"]["multi"]
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            for metric, matchers in _SELECTOR.findall(target["expr"]):
                if metric != "ALERTS":
                    assert matchers.startswith(REPLICA_FILTER), (panel["title"], metric)


def test_pipeline_dashboard_has_exemplars_and_a_jaeger_link() -> None:
    pipeline = next(d for d in load_dashboards().values() if d["uid"] == "coda-pipeline")
    targets = [t for p in iter_panels(pipeline) for t in p.get("targets", [])]
    assert any(t.get("exemplar") and "stage_duration_seconds_bucket" in t["expr"] for t in targets)
    urls = [link.get("url", "") for link in pipeline["links"]]
    assert any("16686/search?service=coda-lite" in url for url in urls)
