"""Every span names the replica it came from: ``service.instance.id`` and, on Kubernetes, the
pod attributes the downward API puts into ``OTEL_RESOURCE_ATTRIBUTES``."""

from __future__ import annotations

import os
import uuid

import pytest

from coda_otel.tracing.setup import build_resource

#: What deploy/kubernetes/base/deployment.yaml sets, with the downward API's values filled in.
POD_ATTRIBUTES = (
    "service.instance.id=coda-lite-7d9f-x2k4,k8s.pod.name=coda-lite-7d9f-x2k4,"
    "k8s.namespace.name=voice,k8s.node.name=node-1,k8s.deployment.name=coda-lite"
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def test_each_process_gets_its_own_instance_id() -> None:
    first, second = build_resource(None, None), build_resource(None, None)
    ids = {r.attributes["service.instance.id"] for r in (first, second)}
    assert len(ids) == 2
    for value in ids:
        assert uuid.UUID(str(value)).version == 4
    assert first.attributes["service.name"] == "coda-lite"
    assert first.attributes["host.name"]


def test_pod_attributes_from_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", POD_ATTRIBUTES + ",host.name=node-1")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "voice-assistant")
    attrs = build_resource(None, "1.2.3").attributes
    assert attrs["service.instance.id"] == "coda-lite-7d9f-x2k4"
    assert attrs["k8s.pod.name"] == "coda-lite-7d9f-x2k4"
    assert attrs["k8s.namespace.name"] == "voice"
    assert attrs["k8s.node.name"] == "node-1"
    assert attrs["k8s.deployment.name"] == "coda-lite"
    assert attrs["host.name"] == "node-1"
    assert (attrs["service.name"], attrs["service.version"]) == ("voice-assistant", "1.2.3")


def test_an_explicit_service_name_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-service-name")
    assert build_resource("explicit", None).attributes["service.name"] == "explicit"
    assert build_resource(None, None).attributes["service.name"] == "from-service-name"


def test_the_resource_attributes_name_the_service_when_nothing_else_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=gateway-assistant")
    assert build_resource(None, None).attributes["service.name"] == "gateway-assistant"
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    assert build_resource(None, None).attributes["service.name"] == "coda-lite"
