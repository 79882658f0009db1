"""Health routes on a real aiohttp server (127.0.0.1) queried by a real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from coda_otel.health.faults import FaultInjector
from coda_otel.health.watchdog import CodaWatchdog
from coda_otel.web.health_routes import add_health_routes
from tests.support import free_port


class Stage:
    def __init__(self, name: str) -> None:
        self.name = name
        self.models_loaded = True
        self.sick = False  # a fault that restarts do not cure
        self.generation = 0

    async def get_heartbeat(self) -> Mapping[str, Any]:
        return {"healthy": not self.sick, "models_loaded": self.models_loaded,
                "response_time": 0.01}  # fmt: skip

    async def restart(self) -> None:
        self.generation += 1

    async def force_restart(self) -> None:
        self.generation += 1


class Service:
    def __init__(self, *, allow_faults: bool, max_restarts: int = 0) -> None:
        self.injector = FaultInjector()
        self.llm, self.cache = Stage("llm"), Stage("cache")
        self.watchdog = CodaWatchdog(
            self.injector.wrap_all([self.llm, self.cache]), failure_threshold=1,
            max_restarts=max_restarts, heartbeat_timeout=0.05, required=["llm"],
        )  # fmt: skip
        self.app = web.Application()
        add_health_routes(self.app, self.watchdog, fault_injector=self.injector,
                          allow_fault_injection=allow_faults)  # fmt: skip
        self.base = ""

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.base + path) as resp:
            assert resp.content_type == "application/json"
            return resp.status, await resp.json()

    async def post(self, path: str, data: str | bytes) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        async with self.session.post(self.base + path, data=data, headers=headers) as resp:
            assert resp.content_type == "application/json"
            return resp.status, await resp.json()

    async def codes(self) -> tuple[int, int, int]:
        """The three health routes' status codes; every 503 must carry the one error shape."""
        answers = [await self.get(path) for path in ("/health", "/health/live", "/health/ready")]
        for code, body in answers:
            if code >= 400:
                assert set(body["error"]) >= {"code", "message"}, body
        return answers[0][0], answers[1][0], answers[2][0]


async def serve(allow_faults: bool, max_restarts: int = 0) -> AsyncIterator[Service]:
    service = Service(allow_faults=allow_faults, max_restarts=max_restarts)
    runner = web.AppRunner(service.app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    service.base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        service.session = session
        try:
            yield service
        finally:
            await runner.cleanup()


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    async for s in serve(allow_faults=True):
        yield s


@pytest.fixture
async def locked_service() -> AsyncIterator[Service]:
    async for s in serve(allow_faults=False):
        yield s


@pytest.fixture
async def patient_service() -> AsyncIterator[Service]:
    """Restarts allowed (one per period), so a required component can be down, not failed."""
    async for s in serve(allow_faults=True, max_restarts=1):
        yield s


async def test_codes_through_the_component_lifecycle(service: Service) -> None:
    # (/health, /health/live, /health/ready) before the first check: alive, not ready
    assert await service.codes() == (200, 200, 503)
    _, body = await service.get("/health")
    assert body["overall_health"] == "degraded" and body["components"]["llm"]["status"] == "unknown"

    service.llm.models_loaded = False
    await service.watchdog.check_health()
    assert await service.codes() == (200, 200, 503)  # healthy but models not loaded yet

    service.llm.models_loaded = True
    await service.watchdog.check_health()
    assert await service.codes() == (200, 200, 200)
    _, body = await service.get("/health")
    llm = body["components"]["llm"]
    assert body["overall_health"] == "healthy" and llm["status"] == "healthy"
    assert llm["last_heartbeat"]["models_loaded"] is True
    assert llm["metrics"][-1]["response_time"] == 0.01 and llm["last_heartbeat_at"]

    service.injector.inject("cache", "unhealthy")  # a non-required component fails
    await service.watchdog.check_health()
    assert await service.codes() == (200, 200, 200)
    _, body = await service.get("/health")
    assert body["overall_health"] == "degraded" and body["failed"] == ["cache"]

    service.injector.inject("llm", "hang")  # a required one fails past its limit
    await service.watchdog.check_health()
    assert await service.codes() == (503, 200, 503)
    _, body = await service.get("/health")
    assert body["overall_health"] == "unhealthy" and sorted(body["failed"]) == ["cache", "llm"]
    _, ready = await service.get("/health/ready")
    assert ready["ready"] is False and ready["components"]["llm"]["status"] == "failed"

    service.watchdog.reset("llm")
    service.watchdog.reset("cache")
    service.injector.clear("llm")
    service.injector.clear("cache")
    await service.watchdog.check_health()
    assert await service.codes() == (200, 200, 200)


async def test_a_required_component_down_is_degraded_until_it_fails(
    patient_service: Service,
) -> None:
    service = patient_service
    await service.watchdog.check_health()
    assert await service.codes() == (200, 200, 200)
    service.llm.sick = True
    await service.watchdog.check_health()  # a failed heartbeat: restarted, still sick
    _, body = await service.get("/health")
    assert body["components"]["llm"]["status"] == "recovering"
    assert body["overall_health"] == "degraded" and service.llm.generation == 2
    assert await service.codes() == (200, 200, 503)  # up, but not ready for turns
    assert await service.watchdog.recover_component("llm") is False  # past the restart limit
    assert (await service.get("/health"))[1]["components"]["llm"]["status"] == "failed"
    assert await service.codes() == (503, 200, 503)


async def test_operator_resets_a_failed_component(service: Service) -> None:
    service.injector.inject("llm", "hang")
    await service.watchdog.check_health()
    assert await service.codes() == (503, 200, 503)  # llm failed (no restarts allowed)

    code, body = await service.post("/debug/components/nope/reset", b"")
    assert code == 404 and "unknown component 'nope'" in body["error"]["message"]
    assert body["error"]["components"] == ["cache", "llm"]
    async with service.session.get(service.base + "/debug/components/llm/reset") as resp:
        assert resp.status == 405  # an action: POST only

    service.injector.clear("llm")  # the operator fixed the cause
    code, body = await service.post("/debug/components/llm/reset", b"")
    assert code == 200 and body["component"] == "llm"
    assert body["status"] == "unknown" and body["consecutive_failures"] == 0
    assert body["restarts"] == 0 and body["last_error"] is None
    assert (await service.get("/health"))[0] == 200  # no longer failed: degraded
    await service.watchdog.check_health()  # supervision resumed
    assert await service.codes() == (200, 200, 200)


async def test_fault_injection_endpoint(service: Service) -> None:
    await service.watchdog.check_health()
    for bad in (b"{not json", b"\xff\xfe", b"[1, 2]", b'{"component": "llm"}',
                b'{"component": "llm", "fault": 3}'):  # fmt: skip
        code, body = await service.post("/debug/faults", bad)
        assert code == 400 and body["error"]["message"], bad
    code, body = await service.post("/debug/faults", '{"component": "nope", "fault": "crash"}')
    assert code == 400 and "unknown component 'nope'" in body["error"]["message"]
    code, body = await service.post("/debug/faults", '{"component": "llm", "fault": "melt"}')
    assert code == 400 and "unknown fault 'melt'" in body["error"]["message"]
    code, body = await service.post("/debug/faults", b"x" * 5000)
    assert code == 400 and "larger than" in body["error"]["message"]
    assert service.injector.active("llm") is None

    code, body = await service.post("/debug/faults", '{"component": "llm", "fault": "crash"}')
    assert code == 202 and body == {"component": "llm", "fault": "crash", "status": "injected"}
    assert service.injector.is_crashed("llm")
    status = await service.watchdog.check_health()
    assert "injected crash" in status["components"]["llm"]["metrics"][-1]["error"]
    assert (await service.get("/health"))[0] == 503  # no restarts allowed: failed at once


async def test_fault_injection_is_forbidden_unless_allowed(locked_service: Service) -> None:
    code, body = await locked_service.post(
        "/debug/faults", '{"component": "llm", "fault": "crash"}'
    )
    assert code == 403 and "disabled" in body["error"]["message"]
    assert locked_service.injector.active("llm") is None


def test_allowing_faults_needs_an_injector() -> None:
    watchdog = CodaWatchdog([Stage("llm")])
    with pytest.raises(ValueError, match="fault_injector"):
        add_health_routes(web.Application(), watchdog, allow_fault_injection=True)
