"""The server's cap on open connections, against a real ``coda-lite serve`` whose open-files
limit is really 256 (:mod:`tests.rlimited`): connections beyond the cap get 503 ``overloaded``
at once, liveness keeps answering, and the service serves again when they leave.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service_harness import Service, coda_service

pytestmark = [pytest.mark.slow]

LAUNCHER = Path(__file__).with_name("rlimited.py")
OPEN_FILES = 256
CAP = OPEN_FILES - 128  # what the service keeps for everything but client connections


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("coda-connections")
    config = (
        "tts:\n  backend: none\n"
        "server:\n  max_connections: 100000\n  header_timeout: 60\n"  # idle sockets stay
    )
    env = {"CODA_TEST_NOFILE": str(OPEN_FILES)}
    with coda_service(home, config=config, env=env, launcher=[str(LAUNCHER)]) as service:
        yield service


@contextlib.contextmanager
def idle_connections(service: Service, n: int) -> Iterator[list[socket.socket]]:
    """``n`` connections that send nothing (as a flood of stuck clients would)."""
    port = int(service.base.rsplit(":", 1)[1])
    conns: list[socket.socket] = []
    try:
        for _ in range(n):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        yield conns
    finally:
        for conn in conns:
            conn.close()


def test_beyond_the_cap_connections_are_refused_cleanly_and_liveness_answers(
    service: Service,
) -> None:
    log = (service.home / "serve.log").read_text(errors="replace")
    assert f"server.max_connections 100000 lowered to {CAP}" in log  # the open-files limit
    assert service.turn("Hello there.").status_code == 200
    with idle_connections(service, CAP - 1):
        # the scrape's own connection is the last one under the cap
        service.eventually(
            lambda: service.metric("coda_http_connections_open ") == CAP,
            what=f"{CAP - 1} idle connections held (and the scrape's)",
        )
        with idle_connections(service, 20):  # beyond the cap: refused, not held
            live = service.get("/health/live", timeout=5)
            assert live.status_code == 200 and live.json() == {"status": "alive"}
            turn = service.turn("Are you there?", timeout=5)
            assert turn.status_code == 503, turn.text
            assert turn.json()["error"]["code"] == "overloaded"
            assert turn.headers["Retry-After"] == "1" and turn.headers["Connection"] == "close"
            assert service.get("/health/ready", timeout=5).status_code == 503
    # the idle clients left: the service serves again, and counted what it refused
    answered = service.eventually(
        lambda: (r := service.turn("Back again?", timeout=30)).status_code == 200 and r,
        what="a turn answered once the connections closed",
    )
    assert answered.json()["response"]
    assert service.metric("coda_http_connections_refused_total ") >= 22
    assert service.get("/health/live").status_code == 200
