"""Faults a turn must feel, against a real ``coda-lite serve``: a hung LLM, injected faults.

The LLM is a real OpenAI-compatible HTTP server run by the test: it answers its ``/v1/models``
probe at once, and its chat completions at once, except a message saying "hang please",
which it never answers (a server whose heartbeat looks fine while its real calls hang).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from coda_otel.testing import wait_until
from tests.service_harness import coda_service


class FakeLLM:
    """A real HTTP server speaking the OpenAI chat API (see the module docstring)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        stop = self.stop

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._json({"data": [{"id": "fake"}]})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if b"hang please" in body:
                    stop.wait(300)  # never answers while the test runs
                    return
                self._json({"choices": [{"message": {"content": "Fine."}}],
                            "usage": {"prompt_tokens": 3, "completion_tokens": 1}})  # fmt: skip

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    llm = FakeLLM()
    home = tmp_path_factory.mktemp("coda-faults")
    config = (
        f"llm:\n  backend: openai\n  url: {llm.url}\n  model: fake\n"
        "tts:\n  backend: none\n"
        "pipeline:\n  llm_timeout: 2\n  tts_timeout: 2\n  memory_retrieval_timeout: 2\n"
        "telemetry:\n  health_interval: 0.3\n  heartbeat_timeout: 1\n  llm_cache_size: 0\n"
        "  failure_threshold: 3\n  max_restarts: 20\n  restart_period: 60\n"
    )
    try:
        with coda_service(home, config=config) as url:
            yield url
    finally:
        llm.close()


def _turn(url: str, text: str) -> requests.Response:
    return requests.post(f"{url}/v1/turns", json={"text": text}, timeout=30)


def _inject(url: str, component: str, fault: str) -> None:
    r = requests.post(f"{url}/debug/faults", json={"component": component, "fault": fault},
                      timeout=10)  # fmt: skip
    assert r.status_code == 202, r.text


def _component(url: str, name: str) -> dict[str, Any]:
    return dict(requests.get(f"{url}/health", timeout=10).json()["components"][name])


def test_an_injected_memory_store_crash_fails_the_turn(base: str) -> None:
    assert _turn(base, "I live in Lisbon.").status_code == 200
    _inject(base, "memory_store", "crash")
    r = _turn(base, "Where do I live?")
    assert r.status_code == 502, r.text
    assert r.json()["error"]["stage"] == "memory_retrieval"
    assert "injected crash" in r.json()["error"]["message"]
    # the watchdog restarts the store; turns work again
    wait_until(lambda: _turn(base, "Where do I live?").status_code == 200, 20,
               what="turns to work after the memory_store restart")  # fmt: skip


@pytest.mark.parametrize(
    ("component", "stage"), [("tts", "tts"), ("memory_store", "memory_retrieval")]
)
def test_an_injected_hang_holds_the_turn_until_its_deadline(
    base: str, component: str, stage: str
) -> None:
    wait_until(lambda: _component(base, component)["status"] == "healthy", 20)
    _inject(base, component, "hang")
    t0 = time.monotonic()
    r = _turn(base, "Hello there.")
    took = time.monotonic() - t0
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "stage_timeout" and r.json()["error"]["stage"] == stage
    assert 1.5 < took < 10, took
    wait_until(lambda: _turn(base, "Hello again.").status_code == 200, 30,
               what=f"turns to work after {component} is restarted")  # fmt: skip


def test_a_hung_llm_is_unhealthy_whatever_its_probe_says_even_after_restarts(base: str) -> None:
    wait_until(lambda: _component(base, "llm")["status"] == "healthy", 20)
    t0 = time.monotonic()
    r = _turn(base, "hang please")
    assert r.status_code == 504 and r.json()["error"]["stage"] == "llm", r.text
    assert time.monotonic() - t0 < 10  # the stage deadline, not the 60 s HTTP timeout

    def restarted_and_still_unhealthy() -> dict[str, Any] | None:
        llm = _component(base, "llm")
        return llm if llm["restarts_total"] >= 1 and llm["status"] != "healthy" else None

    llm = wait_until(restarted_and_still_unhealthy, 20, what="a restart of the hung llm")
    time.sleep(1.0)  # more checks and restarts: the probe answers, the evidence stays
    llm = _component(base, "llm")
    assert llm["status"] != "healthy", llm
    assert "real calls time out" in llm["last_heartbeat"]["last_error"], llm
    # one real call that works clears it
    assert _turn(base, "Hello.").status_code == 200
    wait_until(lambda: _component(base, "llm")["status"] == "healthy", 20,
               what="the llm to be healthy after a call succeeded")  # fmt: skip
