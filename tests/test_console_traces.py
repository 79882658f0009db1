"""The console's Traces view in a real Chromium against a real ``coda-lite serve`` whose OTLP
exporter points at a port nobody listens on: the turns are still kept by the local trace store,
searched, filtered and opened as a waterfall; a failed and an interrupted (stalled) turn show
as such. Screenshots go to docs/console/ with ``make screenshots``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.browser_harness import ConsolePage, chromium, playwright_expect
from tests.prometheus_harness import wait_until
from tests.service_harness import coda_service
from tests.support import free_port, require_tool

expect = playwright_expect()
pytestmark = [pytest.mark.slow, pytest.mark.browser]

CONFIG = (
    # no restart: an injected fault lasts, so a turn meets it however slow the machine is
    "telemetry:\n  health_interval: 0.5\n  failure_threshold: 1000\npipeline:\n  tts_budget: 1.0\n"
)
JAEGER = "http://jaeger.test:16686"
STAGES = ["stt", "memory_retrieval", "llm", "memory_update", "tts"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """Chromium and a service whose OTLP endpoint is a port nobody listens on."""
    require_tool("espeak-ng")
    env = {
        "OTEL_TRACES_EXPORTER": None,  # the default for an endpoint: otlp
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "CODA_JAEGER_URL": JAEGER,
    }
    home = tmp_path_factory.mktemp("coda-traces")
    with chromium() as browser, coda_service(home, config=CONFIG, env=env) as service:
        url = service.base
        yield browser, url


@pytest.fixture
def base(service: tuple[Any, str]) -> str:
    return service[1]


@pytest.fixture
def console(service: tuple[Any, str]) -> Iterator[ConsolePage]:
    cp = ConsolePage.open(service[0], f"{service[1]}/debug/#traces")
    cp.wait_live()
    yield cp
    cp.close()


def turn(base: str, text: str, session: str) -> dict[str, Any]:
    r = requests.post(f"{base}/v1/turns", json={"text": text, "session_id": session}, timeout=60)
    return {"status": r.status_code, **r.json()}


def stored(base: str, **query: str) -> list[dict[str, Any]]:
    body = requests.get(f"{base}/debug/traces", params=query, timeout=10).json()
    return list(body["traces"])


def wait_stored(base: str, trace_id: str) -> None:
    wait_until(
        lambda: any(t["trace_id"] == trace_id for t in stored(base)), 15, f"trace {trace_id}"
    )


#: A turn's spans: the request's SERVER span, the root, five stages, the model call.
TURN_SPANS = 8


def wait_whole(base: str, trace_id: str) -> None:
    """Until the stored turn holds all its spans (the SERVER span ends after the turn's root
    and is appended to the stored turn a batch later)."""

    def spans() -> int:
        got = requests.get(f"{base}/debug/traces/{trace_id}", timeout=5)
        return len(got.json()["spans"]) if got.status_code == 200 else 0

    wait_until(lambda: spans() >= TURN_SPANS, 15, f"all spans of {trace_id}")


def search(cp: ConsolePage, session: str = "", status: str = "", min_ms: str = "") -> None:
    cp.page.fill("#trace-session", session)
    cp.page.select_option("#trace-status", status)
    cp.page.fill("#trace-min", min_ms)
    cp.page.click("#trace-form button[type=submit]")
    expect(cp.page.locator("#trace-msg")).not_to_have_text("Searching…")


def test_turns_are_searched_filtered_and_opened_as_a_waterfall(
    console: ConsolePage, base: str
) -> None:
    cp = console
    alpha = [turn(base, f"Alpha question {n}.", "alpha") for n in range(2)]
    beta = turn(base, "Beta question.", "beta")
    for result in (*alpha, beta):
        assert result["status"] == 200, result
        wait_stored(base, result["trace_id"])
    search(cp)
    rows = cp.page.locator("#trace-table tr[data-trace]")
    expect(rows.first).to_have_attribute("data-trace", beta["trace_id"])  # newest first
    search(cp, session="alpha")
    expect(rows).to_have_count(2)
    assert [r.get_attribute("data-trace") for r in rows.all()] == [
        alpha[1]["trace_id"],
        alpha[0]["trace_id"],
    ]
    search(cp, session="alpha", min_ms="9999999")
    expect(rows).to_have_count(0)
    expect(cp.page.locator("#trace-table")).to_contain_text("No stored turns match")
    search(cp, session="alpha")
    expect(rows).to_have_count(2)
    # a turn that ends while the view is open comes in at the top, without a search
    live = turn(base, "Alpha again, live.", "alpha")
    expect(rows.first).to_have_attribute("data-trace", live["trace_id"], timeout=10000)
    expect(rows).to_have_count(3)
    wait_stored(base, live["trace_id"])
    wait_whole(base, live["trace_id"])
    cp.page.click(f"#trace-table tr[data-trace='{live['trace_id']}'] button.link")
    trace = cp.page.locator(f"article.trace[data-trace='{live['trace_id']}']")
    spans = trace.locator("details.span")
    expect(spans).to_have_count(TURN_SPANS)
    shown = [s.get_attribute("data-span") for s in spans.all()]
    # in start order: the request, the turn under it, then its stages and the model call
    assert shown[:2] == ["POST /v1/turns", "conversation"]
    assert sorted(shown[2:]) == sorted([*STAGES, "chat echo"])
    expect(trace.locator("header .badge")).to_have_text("ok")
    expect(trace.locator("section.latency")).to_contain_text("Voice-to-voice")
    expect(trace.locator("section.latency .part[data-part=tts_first_sentence]")).to_contain_text(
        "ms"
    )
    expect(trace.locator("a.jaeger")).to_have_attribute(
        "href", f"{JAEGER}/trace/{live['trace_id']}"
    )
    llm = trace.locator("details.span[data-span=llm]")
    llm.locator("summary").click()
    expect(llm.locator(".span-body")).to_contain_text("coda.stage")
    expect(llm.locator(".span-body")).to_contain_text("gen_ai")
    trace.locator("button.show-log").click()
    expect(trace.locator(".trace-log")).to_contain_text(live["conversation_id"])
    # human units: milliseconds and seconds, never raw microseconds
    text = trace.inner_text()
    assert " ms" in text and "voice_to_voice_us" not in text
    cp.screenshot("traces")
    assert cp.errors == []


def test_a_failed_and_an_interrupted_turn_are_found_by_status(
    console: ConsolePage, base: str
) -> None:
    cp = console
    # the faults last for the rest of the module (no restart clears them): this test is last
    hang = {"component": "tts", "fault": "hang"}  # until the watchdog restarts it
    assert requests.post(f"{base}/debug/faults", json=hang, timeout=10).status_code == 202
    answers: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: answers.append(turn(base, "Light the lamp.", "cut")))
    worker.start()
    cp.view("pipeline")
    running = cp.page.locator("article.turn[data-status=running]").first
    expect(running.locator(".stage[data-stage=tts] .stall")).to_contain_text(
        "stalled", timeout=15000
    )
    running.locator("button.interrupt").click()
    worker.join(60)
    assert answers and answers[0]["status"] == 409, answers
    crash = {"component": "memory_store", "fault": "crash"}
    assert requests.post(f"{base}/debug/faults", json=crash, timeout=10).status_code == 202
    failed = requests.post(
        f"{base}/v1/turns", json={"text": "This one fails.", "session_id": "broken"}, timeout=60
    )
    assert failed.status_code == 502, failed.text
    wait_until(lambda: stored(base, session_id="broken"), 15, "the failed turn stored")
    [row] = stored(base, session_id="broken")
    assert row["status"] == "error"

    cp.view("traces")
    search(cp, status="error")
    rows = cp.page.locator("#trace-table tr[data-trace]")
    expect(rows.first).to_have_attribute("data-trace", row["trace_id"])
    expect(rows.first.locator(".badge").first).to_have_text("error")
    rows.first.locator("button.link").click()
    trace = cp.page.locator(f"article.trace[data-trace='{row['trace_id']}']")
    expect(trace.locator("details.span[data-status=error]").first).to_be_visible()
    expect(trace.locator(".interruption")).to_contain_text("error")
    cp.screenshot("traces-error")
    search(cp, session="cut", status="interrupted")
    expect(rows).to_have_count(1, timeout=10000)
    search(cp, session="cut", status="stalled")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".badge").first).to_have_text("interrupted")
    rows.first.locator("button.link").click()
    tts = cp.page.locator("article.trace details.span[data-span=tts]")
    expect(tts).to_have_attribute("data-stalled", "true")
    tts.locator("summary").click()
    expect(tts.locator("tr[data-event='stage.stalled']")).to_have_count(1)
    expect(cp.page.locator("article.trace .interruption")).to_contain_text("interrupted")
    cp.screenshot("traces-interrupted")
    assert cp.errors == []
