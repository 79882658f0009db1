"""The compose stack and the service image, checked without Docker.

The compose file is validated by ``check-jsonschema`` against the Compose Specification schema
that package ships (nothing outside the repo, no network); then what it wires is checked against
the files it mounts: the app's traces go through the OpenTelemetry Collector to Jaeger, every
config lands where its service reads it, images are pinned.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prometheus_harness import (
    COMPOSE_YML,
    DASHBOARD_PROVIDERS_DIR,
    JAEGER_YAML,
    REPO,
    load_yaml,
)
from tests.support import require_module

pytestmark = [pytest.mark.stack]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(load_yaml(COMPOSE_YML))


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with the Compose Specification schema it ships (no network, no files
    outside the repo)."""
    require_module("check_jsonschema")
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    argv.append(str(path))
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)


def test_compose_file_matches_the_compose_specification(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    proc = _check_compose(COMPOSE_YML)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # ... and the schema does reject a broken file.
    broken = tmp_path / "compose.yml"
    broken.write_text(
        yaml.safe_dump(dict(compose, services={"app": {"image": "x", "ports": "8765"}}))
    )
    assert _check_compose(broken).returncode != 0


def test_compose_runs_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "app",
        "otel-collector",
        "jaeger",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
        # Only the Collector's image has nothing to probe with (a lone binary, no shell).
        assert not svc["healthcheck"].get("disable") or name == "otel-collector", name
        if "image" in svc and "build" not in svc:
            repo, _, tag = svc["image"].rpartition(":")
            assert repo and tag and tag != "latest", f"{name}: image not pinned: {svc['image']}"
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    app = services["app"]
    assert (REPO / app["build"]).joinpath("Dockerfile").is_file()
    # Through the Collector by default; CODA_OTLP_ENDPOINT points it straight at Jaeger.
    endpoint = app["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "${CODA_OTLP_ENDPOINT:-http://otel-collector:4317}"
    collector = services["otel-collector"]
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:0.")
    assert collector["environment"]["JAEGER_OTLP_ENDPOINT"] == "jaeger:4317"
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
    collector = svc["otel-collector"]
    target = dict(_mounts(collector))["./deploy/otel-collector/config.yaml"]
    assert collector["command"] == [f"--config={target}"]
    grafana = dict(_mounts(svc["grafana"]))
    assert grafana["./grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = load_yaml(DASHBOARD_PROVIDERS_DIR / "dashboards.yml")["providers"]
    assert [p["options"]["path"] for p in providers] == [grafana["./grafana/dashboards"]]


def test_otlp_goes_in_at_the_collector_and_on_to_jaeger(compose: dict[str, Any]) -> None:
    """The Collector publishes OTLP on the host; Jaeger takes OTLP inside the network."""
    config = load_yaml(JAEGER_YAML)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert "otlp" in config["service"]["pipelines"]["traces"]["receivers"]

    def published(service: str) -> set[str]:
        return {
            p.split("#")[0].strip().rsplit(":", 1)[-1]
            for p in compose["services"][service]["ports"]
        }

    assert published("jaeger") == {"16686"}
    assert published("otel-collector") == {"4317", "4318"}


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
