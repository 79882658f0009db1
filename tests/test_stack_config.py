"""The dashboard stack's files, checked by the real tools and against each other.

promtool and amtool check the Prometheus and Alertmanager configs and run the alert unit tests;
the compose file is validated against the Compose Specification schema; the Grafana dashboards
name only provisioned datasources and only variables they define.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from tests.prometheus_harness import (
    ALERTMANAGER_YML,
    ALERTS_TEST_YML,
    ALERTS_YML,
    COMPOSE_SCHEMA,
    COMPOSE_YML,
    DASHBOARD_PROVIDERS_DIR,
    DASHBOARD_UIDS,
    DASHBOARDS,
    DATASOURCES_DIR,
    GRAFANA_BUILTINS,
    JAEGER_YAML,
    PROMETHEUS_YML,
    REPO,
    SCRAPE_JOB,
    alert_rules,
    iter_panels,
    load_dashboards,
    load_yaml,
    template_variables,
)
from tests.support import IN_CI, require_module, require_tool

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


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST_YML)["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules() if "alert" in rule}
    assert alerts - fired == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested staying quiet"


# --- docker compose ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE_YML))


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    require_module("jsonschema")
    import jsonschema

    if not COMPOSE_SCHEMA.is_file():
        msg = f"Compose Specification schema missing at {COMPOSE_SCHEMA}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # ... and the schema does reject a broken file.
    broken = dict(compose, services={"app": {"image": "x", "ports": "8765"}})
    assert list(validator.iter_errors(broken))


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"app", "jaeger", "prometheus", "alertmanager", "grafana"}
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
        if "image" in svc and "build" not in svc:
            repo, _, tag = svc["image"].rpartition(":")
            assert repo and tag and tag != "latest", f"{name}: image not pinned: {svc['image']}"
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    app = services["app"]
    assert (REPO / app["build"]).joinpath("Dockerfile").is_file()
    assert app["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
    assert app["command"][:2] == ["coda-lite", "serve"]
    assert "--enable-feature=exemplar-storage" in services["prometheus"]["command"]


def _mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    return [tuple(v.split(":")[:2]) for v in svc.get("volumes", [])]


def test_compose_mounts_exist_and_volumes_are_named(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, svc in compose["services"].items():
        for source, _target in _mounts(svc):
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                used.add(source)
    assert used == declared and declared


def test_config_files_are_mounted_where_the_services_read_them(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    prom_mounts = dict(_mounts(svc["prometheus"]))
    assert prom_mounts["./deploy/prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in svc["prometheus"]["command"]
    am_mounts = dict(_mounts(svc["alertmanager"]))
    assert am_mounts["./deploy/alertmanager"] == "/etc/alertmanager"
    assert dict(_mounts(svc["jaeger"]))["./deploy/jaeger/config.yaml"] == "/etc/jaeger/config.yaml"
    grafana = dict(_mounts(svc["grafana"]))
    assert grafana["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = load_yaml(DASHBOARD_PROVIDERS_DIR / "dashboards.yml")["providers"]
    assert [p["options"]["path"] for p in providers] == [grafana["./grafana/dashboards"]]


def test_jaeger_receives_otlp_on_the_published_ports(compose: dict[str, Any]) -> None:
    config = load_yaml(JAEGER_YAML)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert "otlp" in config["service"]["pipelines"]["traces"]["receivers"]
    ports = {p.rsplit(":", 1)[-1] for p in compose["services"]["jaeger"]["ports"]}
    assert {"4317", "4318", "16686"} <= ports


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


def test_pipeline_dashboard_has_exemplars_and_a_jaeger_link() -> None:
    pipeline = next(d for d in load_dashboards().values() if d["uid"] == "coda-pipeline")
    targets = [t for p in iter_panels(pipeline) for t in p.get("targets", [])]
    assert any(t.get("exemplar") and "stage_duration_seconds_bucket" in t["expr"] for t in targets)
    urls = [link.get("url", "") for link in pipeline["links"]]
    assert any("16686/search?service=coda-lite" in url for url in urls)


def test_dockerfile_builds_the_service_image() -> None:
    lines = [ln.strip() for ln in (REPO / "Dockerfile").read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    text = "\n".join(lines)
    assert "espeak-ng" in text
    torch, extras = text.index("pip install torch==2.13.0"), text.index(".[embeddings,speech]")
    assert torch < extras, "torch must be pinned before the extras pull it in"
    assert lines[-1] == 'CMD ["coda-lite", "serve", "--host", "0.0.0.0", "--port", "8765"]'
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_a_public_bind_in_compose_comes_with_a_debug_token() -> None:
    """`coda-lite serve` refuses 0.0.0.0 without CODA_DEBUG_TOKEN: compose must pass one."""
    compose = load_yaml(COMPOSE_YML)
    app = compose["services"]["app"]
    command = app["command"]
    host = command[command.index("--host") + 1]
    assert host not in ("127.0.0.1", "localhost")
    token = app["environment"]["CODA_DEBUG_TOKEN"]
    assert token.startswith("${CODA_DEBUG_TOKEN:?"), "compose must fail fast without a token"
