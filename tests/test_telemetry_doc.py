"""docs/telemetry.md lists every span, event and attribute coda-lite emits, with its type and
its source (a stable OpenTelemetry convention, a development one, or the project's ``coda.*``);
this test runs a real ``coda-lite serve`` through the paths that emit them (a turn called
with a caller's trace context, a failed stage, a stalled and interrupted turn, a passed
deadline, memory snapshots) and checks the table against what a real OTLP receiver got, both
ways, so the table cannot drift.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from coda_lite.speech.audio import wav_bytes
from tests.fake_openai import FakeOpenAI
from tests.service_harness import Service, coda_service
from tests.telemetry_catalogue import (
    SOURCES,
    documented_rows,
    emitted_rows,
    source_of,
    table,
)

pytestmark = [pytest.mark.slow]

DOC = Path(__file__).resolve().parents[1] / "docs" / "telemetry.md"
CONFIG = (
    "llm:\n  backend: openai\n  url: {url}\n  model: fake\n"
    "pipeline:\n  llm_timeout: 3\n  llm_budget: 0.5\n"
    "telemetry:\n  llm_cache_size: 0\n  health_interval: 0.5\n  snapshot_interval: 1\n"
    "  failure_threshold: 1\n  max_restarts: 20\n"
)
CALLER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


@pytest.fixture(scope="module")
def spans(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    env = {"CODA_CAPTURE_CONTENT": "1"}  # content attributes are part of the catalogue
    with FakeOpenAI() as model:
        home = tmp_path_factory.mktemp("coda-telemetry")
        config = CONFIG.format(url=model.url)
        with coda_service(home, config=config, env=env, otlp=True) as service:
            yield _exercise(service)


def _exercise(service: Service) -> list[Any]:
    ok = service.turn("My name is Ada and I live in Lisbon.", session_id="t-1", headers=CALLER)
    assert ok.status_code == 200, ok.text
    silent = base64.b64encode(wav_bytes(bytes(32000), rate=16000)).decode()
    failed = service.turn(audio_wav_base64=silent, session_id="t-1")  # the stt stage fails
    assert failed.status_code == 422, failed.text
    with ThreadPoolExecutor(max_workers=1) as pool:  # the model server never answers this
        first = pool.submit(service.turn, "hang please", session_id="t-2")
        service.eventually(lambda: service.metric('coda_stage_stalls_total{stage="llm"}') >= 1,
                           what="the silent llm stage to stall")  # fmt: skip
        second = service.turn("Never mind.", session_id="t-2")  # barge-in
        assert first.result(timeout=60).status_code == 409
    assert second.status_code == 200, second.text
    late = service.turn("hang please", session_id="t-3")  # past its 3 s deadline
    assert late.status_code == 504, late.text
    receiver = service.receiver
    assert receiver is not None

    def all_in() -> list[Any]:
        got = [s for _, s in receiver.spans()]
        names = {s.name for s in got}
        return got if {"conversation", "memory_snapshot", "POST /v1/turns"} <= names else []

    spans: list[Any] = service.eventually(all_in, what="the turns' spans")
    return spans


def test_the_table_lists_exactly_what_is_emitted(spans: list[Any]) -> None:
    emitted = emitted_rows(spans)
    documented = documented_rows(DOC)
    missing = emitted - set(documented)
    stale = set(documented) - emitted
    assert not missing and not stale, (
        f"docs/telemetry.md drifted.\nEmitted, not documented: {sorted(missing)}\n"
        f"Documented, not emitted: {sorted(stale)}\nThe table as emitted now:\n{table(emitted)}"
    )


def test_every_attribute_names_its_source_by_the_rule() -> None:
    for (span, event, attr, _), source in documented_rows(DOC).items():
        if attr == "-":
            assert source == "-", (span, event)
            continue
        assert source in SOURCES and source == source_of(attr), (span, event, attr, source)
