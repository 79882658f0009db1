"""The pipeline debugger through its public surface, on a real SDK provider."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from coda_otel.cli.main import main as cli_main
from coda_otel.events import ConversationEvent, StageEvent, StallEvent
from coda_otel.pipeline.conversation_log import latest_log, read_log
from coda_otel.pipeline.debugger import ConversationPipelineDebugger
from coda_otel.pipeline.errors import STACK_LIMIT
from coda_otel.sanitize import TRUNCATION_MARK, Sanitizer
from coda_otel.testing import RecordingListener, capture_pipeline_events
from tests.otlp_receivers import STAGES, fake_turn
from tests.support import FakeClock


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


@pytest.fixture
def dbg(provider: TracerProvider, tmp_path: Path) -> Iterator[ConversationPipelineDebugger]:
    debugger = ConversationPipelineDebugger(
        output_dir=tmp_path / "logs", tracer_provider=provider, sanitizer=Sanitizer()
    )
    yield debugger
    debugger.close()


class Stalls(RecordingListener):
    def __init__(self) -> None:
        super().__init__()
        self.stalls: list[StallEvent] = []

    def on_stage_stalled(self, event: StallEvent) -> None:
        self.stalls.append(event)


class Broken:
    def on_stage_end(self, event: StageEvent) -> None:
        raise RuntimeError("listener bug")

    def on_conversation_end(self, event: ConversationEvent) -> None:
        raise RuntimeError("listener bug")


def _trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    spans = exporter.get_finished_spans()
    return [s for s in spans if s.context is not None and f"{s.context.trace_id:032x}" == trace_id]


async def test_json_log_round_trip(
    dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    conv = await fake_turn(dbg, transcript="call me on +44 20 7946 0958")
    assert dbg.flush(5)
    record = read_log(dbg.log_writer.last_path)  # type: ignore[arg-type]
    assert record["conversation_id"] == conv.conversation_id
    assert record["trace_id"] == conv.trace_id and record["status"] == "ok"
    assert [s["stage_name"] for s in record["stages"]] == list(STAGES)
    spans = {f"{s.context.span_id:016x}": s.name for s in _trace(exporter, conv.trace_id)}
    for stage in record["stages"]:
        assert spans[stage["span_id"]] == stage["stage_name"]  # a log entry leads to its span
        assert stage["duration_ms"] >= 0
        assert stage["input"]["text"]["preview"] == "call me on [PHONE]"
    assert record["total_duration_ms"] >= sum(s["duration_ms"] for s in record["stages"])
    assert latest_log(tmp_path / "logs") == dbg.log_writer.last_path


async def test_error_turn_in_log_and_listeners(dbg: ConversationPipelineDebugger) -> None:
    recorder = RecordingListener()
    dbg.add_listener(Broken())
    dbg.add_listener(recorder)
    with pytest.raises(RuntimeError):
        await fake_turn(dbg, fail_stage="memory_update", transcript="key sk-abcdefghijklmnop1234")
    dbg.flush(5)
    record = read_log(dbg.log_writer.last_path)  # type: ignore[arg-type]
    names = [s["stage_name"] for s in record["stages"]]
    assert names == ["stt", "memory_retrieval", "llm", "memory_update", "error"]
    error = record["stages"][-1]
    assert error["metadata"] == {"error_type": "RuntimeError", "stage": "memory_update"}
    assert error["input"]["error"].startswith("memory_update failed for key [")
    assert "Traceback" in error["output"]["traceback"]
    assert "sk-abcdef" not in json.dumps(record)
    assert record["status"] == "error"
    assert [e.status for e in recorder.stages] == ["ok", "ok", "ok", "error"]
    assert recorder.stages[-1].error_type == "RuntimeError"
    [conversation] = recorder.conversations
    assert conversation.status == "error" and len(conversation.stages) == 4


async def test_a_stage_event_is_a_plain_frozen_event(dbg: ConversationPipelineDebugger) -> None:
    recorder, late = RecordingListener(), RecordingListener()
    dbg.add_listener(recorder)
    with dbg.conversation(session_id="s", turn=2) as conv:
        async with conv.stage("llm", {"query": "hi", "score": 0.5}) as st:
            st.set_output({"response": "hello"})
        dbg.add_listener(late)  # heard from the next stage on
        dbg.remove_listener(recorder)
        async with conv.stage("tts", {"text": "hello"}):
            pass
    (event,) = recorder.stages
    same = StageEvent(
        conversation_id=conv.conversation_id, session_id="s", turn=2, stage="llm",
        status="ok", started_at=event.started_at, duration_s=event.duration_s, input_size=5,
        output_size=5, trace_id=conv.trace_id, span_id=event.span_id,
    )  # fmt: skip
    assert event == same and hash(event) == hash(same) and event.to_dict() == same.to_dict()
    with pytest.raises(AttributeError):  # FrozenInstanceError: listeners share one event
        event.turn = 3  # type: ignore[misc]
    assert [e.stage for e in late.stages] == ["tts"]


async def test_cancelled_stage_is_not_an_error(
    dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter
) -> None:
    task = asyncio.create_task(fake_turn(dbg, cancel_stage="tts"))
    with pytest.raises(asyncio.CancelledError):
        await task
    by_name = {s.name: s for s in exporter.get_finished_spans()}
    tts = by_name["tts"]
    assert tts.attributes["coda.stage.status"] == "cancelled"
    assert tts.status.status_code is StatusCode.UNSET
    root = by_name["conversation"]
    assert root.attributes["coda.conversation.status"] == "cancelled"
    assert root.status.status_code is StatusCode.UNSET


async def test_tracing_off_stops_spans_only(
    provider: TracerProvider, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    clock = FakeClock()
    events = Stalls()
    dbg = ConversationPipelineDebugger(
        enabled=False,
        output_dir=tmp_path / "logs",
        tracer_provider=provider,
        listeners=[events],
        stall_budgets={"llm": 5.0},
        clock=clock,
    )
    try:
        assert dbg.tracing is False and dbg.enabled is False
        with dbg.conversation(session_id="s1", turn=1) as conv:
            for name in STAGES:
                async with conv.stage(name, {"text": "hello"}) as st:
                    if name == "llm":
                        clock.advance(6)
                        dbg.stalls.check()  # what the loop's timer does once the budget passed
                    st.set_output({"text": "hi"})
        assert conv.conversation_id and conv.trace_id is None
        cid = dbg.start_conversation()  # the reported-stage API records alike
        reported = dbg.log_stage("stt", {"audio_bytes": 3}, {"transcript": "hi"})
        assert reported["stage_name"] == "stt" and dbg.end_conversation() is not None
        assert exporter.get_finished_spans() == ()  # no span at all, not even a root
        assert events.stage_names() == [*STAGES, "stt"]
        assert [c.conversation_id for c in events.conversations] == [conv.conversation_id, cid]
        [stall] = events.stalls
        assert (stall.stage, stall.idle_s, stall.trace_id) == ("llm", 6.0, None)
        assert dbg.flush(5)
        logs = [read_log(p) for p in (tmp_path / "logs").glob("*.json")]
        [turn] = [log for log in logs if log["conversation_id"] == conv.conversation_id]
        assert [s["stage_name"] for s in turn["stages"]] == list(STAGES)
        assert [s["stage"] for s in turn["stalls"]] == ["llm"] and len(logs) == 2
        dbg.tracing = True  # and back: the next turn is traced again
        traced = await fake_turn(dbg)
        assert len(_trace(exporter, traced.trace_id)) == 6
    finally:
        dbg.close()


async def test_save_logs_switches_the_log_only(
    dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    with capture_pipeline_events(dbg) as events:
        dbg.save_logs = False
        conv = await fake_turn(dbg)
    assert dbg.flush(5) and latest_log(tmp_path / "logs") is None
    assert events.stage_names() == list(STAGES) and len(_trace(exporter, conv.trace_id)) == 6


@pytest.mark.parametrize(("level", "expected"), [("INFO", logging.INFO), (logging.ERROR, 40)])
def test_log_level_sets_the_tools_own_logger_only(
    tmp_path: Path, level: int | str, expected: int, caplog: pytest.LogCaptureFixture
) -> None:
    tool = logging.getLogger("coda_otel.pipeline")
    before = (logging.getLogger().level, logging.getLogger("coda_otel").level, tool.level)
    try:
        ConversationPipelineDebugger(output_dir=tmp_path).close()
        assert tool.level == before[2]  # not given: nothing is set
        dbg = ConversationPipelineDebugger(enabled=True, log_level=level, output_dir=tmp_path)
        dbg.close()
        assert tool.level == expected
        assert (logging.getLogger().level, logging.getLogger("coda_otel").level) == before[:2]
        with caplog.at_level(logging.NOTSET):
            dbg = ConversationPipelineDebugger(log_level="WARNING", output_dir=tmp_path)
            dbg.start_conversation("quiet")  # an INFO record, below the tool's level now
            dbg.close()
        assert not [r for r in caplog.records if "quiet" in r.getMessage()]
    finally:
        tool.setLevel(before[2])


async def test_concurrent_conversations_do_not_mix(
    dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter
) -> None:
    convs = await asyncio.gather(*(fake_turn(dbg, turn=n, session_id=f"s{n}") for n in range(6)))
    assert len({c.trace_id for c in convs}) == 6
    for conv in convs:
        spans = _trace(exporter, conv.trace_id)
        root = next(s for s in spans if s.name == "conversation")
        children = sorted((s for s in spans if s is not root), key=lambda s: s.start_time or 0)
        assert [s.name for s in children] == list(STAGES)
        assert all(
            s.parent is not None and s.parent.span_id == root.context.span_id for s in children
        )
        assert root.attributes["session.id"] == f"s{conv.turn}"


async def test_context_follows_awaits_and_worker_threads(
    dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    tracer = provider.get_tracer("embedder")

    def embed() -> None:  # instrumented library code running in a worker thread
        with tracer.start_as_current_span("embed"):
            pass

    def sync_stage(conv: Any) -> None:
        with conv.stage("tts", {"text": "hi"}) as st:
            st.set_output({"audio_bytes": b"x" * 10})

    with dbg.conversation(turn=1) as conv:
        async with conv.stage("memory_retrieval", {"query": "q"}):
            await asyncio.sleep(0)
            await asyncio.to_thread(embed)
        await asyncio.to_thread(sync_stage, conv)  # a stage opened inside a worker thread
        plain = threading.Thread(target=sync_stage, args=(conv,))  # no context copied at all
        plain.start()
        plain.join()

    spans = _trace(exporter, conv.trace_id)
    ids = {s.name: s.context.span_id for s in spans if s.name != "tts"}
    embed_span = next(s for s in spans if s.name == "embed")
    assert embed_span.parent.span_id == ids["memory_retrieval"]
    tts = [s for s in spans if s.name == "tts"]
    assert len(tts) == 2 and all(s.parent.span_id == ids["conversation"] for s in tts)
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaked into the caller


def test_spec_api(dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter) -> None:
    cid = dbg.start_conversation()
    empty = dbg.end_conversation()  # the spec crashed here: total_duration used before set
    assert empty is not None and empty["conversation_id"] == cid
    assert empty["stages"] == [] and empty["total_duration_ms"] >= 0

    cid = dbg.start_conversation("turn-42")
    stage = dbg.log_stage("llm", {"query": "hi"}, {"response": "hello"}, {"duration_ms": 12.5})
    assert stage is not None and stage["duration_ms"] == 12.5
    dbg.log_stage("error", {"error": "boom"}, {"traceback": "..."}, {"error_type": "ValueError"})
    result = dbg.end_conversation()
    assert result is not None and result["status"] == "error"
    assert [s["stage_name"] for s in result["stages"]] == ["llm", "error"]
    llm = next(s for s in exporter.get_finished_spans() if s.name == "llm")
    assert llm.end_time - llm.start_time == 12_500_000  # placed from the reported duration
    root = next(
        s
        for s in exporter.get_finished_spans()
        if s.name == "conversation" and s.attributes["coda.conversation.id"] == "turn-42"
    )
    assert root.status.status_code is StatusCode.ERROR
    assert dbg.end_conversation() is None  # nothing current any more


async def test_log_files_are_bounded_and_named_safely(
    provider: TracerProvider, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    dbg = ConversationPipelineDebugger(output_dir=folder, tracer_provider=provider, log_max_files=3)
    with dbg.conversation(conversation_id="../../escape") as conv:
        async with conv.stage("stt", {"audio_bytes": b"1"}):
            pass
    for n in range(5):
        await fake_turn(dbg, turn=n)
    assert dbg.close(5)
    files = sorted(folder.iterdir())
    assert len(files) == 3 and all(p.parent == folder for p in files)
    assert not (tmp_path.parent / "escape").exists()


async def test_log_retention_by_bytes_keeps_the_newest_that_fit(
    provider: TracerProvider, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    one = ConversationPipelineDebugger(output_dir=folder, tracer_provider=provider)
    await fake_turn(one)
    assert one.close(5) and one.log_writer.last_path is not None
    size = one.log_writer.last_path.stat().st_size
    budget = int(size * 2.5)  # room for two logs of this shape, not three
    dbg = ConversationPipelineDebugger(
        output_dir=folder, tracer_provider=provider, log_max_bytes=budget
    )
    paths = []
    for n in range(4):
        await fake_turn(dbg, turn=n)
        assert dbg.flush(5)
        paths.append(dbg.log_writer.last_path)
    assert dbg.close(5)
    kept = sorted(folder.glob("*.json"))
    assert kept == sorted(paths[-2:])  # the two newest, the rest (and the first log) deleted
    assert sum(p.stat().st_size for p in kept) <= budget
    assert [read_log(p)["turn"] for p in sorted(kept, key=paths.index)] == [2, 3]


async def test_a_byte_budget_below_one_log_still_keeps_the_log_just_written(
    provider: TracerProvider, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    dbg = ConversationPipelineDebugger(output_dir=folder, tracer_provider=provider, log_max_bytes=1)
    first = await fake_turn(dbg, turn=1)
    conv = await fake_turn(dbg, turn=2)
    assert dbg.close(5)
    assert dbg.log_writer.written == 2
    [kept] = list(folder.glob("*.json"))  # the older log is gone, the newest is not
    assert kept == dbg.log_writer.last_path
    assert read_log(kept)["conversation_id"] == conv.conversation_id != first.conversation_id


class Unprintable:
    """Content whose __len__ and __str__ raise (a buggy or hostile object)."""

    def __len__(self) -> int:
        raise RuntimeError("no len")

    def __str__(self) -> str:
        raise RuntimeError("no str")

    __repr__ = __str__


@pytest.mark.parametrize("capture", [False, True])
async def test_content_that_cannot_be_described_never_breaks_the_stage(
    dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter, capture: bool
) -> None:
    dbg.capture_content = capture
    ran = []
    with dbg.conversation(turn=1) as conv:
        async with conv.stage("stt", {"audio": Unprintable()}) as st:
            ran.append("stt")
            st.set_output({"transcript": Unprintable()})
        with conv.stage("tts", Unprintable()) as st:  # type: ignore[arg-type]
            ran.append("tts")
    assert ran == ["stt", "tts"]  # the stage bodies ran
    assert dbg.flush(5)
    spans = {s.name: s for s in _trace(exporter, conv.trace_id)}
    assert set(spans) == {"conversation", "stt", "tts"}
    assert spans["stt"].attributes["coda.stage"] == "stt"
    assert spans["stt"].attributes["coda.stage.status"] == "ok"
    assert spans["stt"].parent.span_id == spans["conversation"].context.span_id
    record = read_log(dbg.log_writer.last_path)  # type: ignore[arg-type]
    assert [s["stage_name"] for s in record["stages"]] == ["stt", "tts"]
    assert record["status"] == "ok"


class WrappedStageError(RuntimeError):
    """What coda_lite's pipeline raises: ``raise StageError(stage, exc) from exc``."""


async def test_a_wrapped_stage_failure_is_recorded_once(
    dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter
) -> None:
    recorder = RecordingListener()
    dbg.add_listener(recorder)
    with pytest.raises(WrappedStageError), dbg.conversation(turn=1) as conv:
        try:
            async with conv.stage("llm", {"prompt": "hi"}):
                raise ValueError("model crashed")
        except Exception as exc:
            raise WrappedStageError("llm stage failed") from exc
    # implicit chaining (__context__) counts too
    with pytest.raises(WrappedStageError), dbg.conversation(turn=2) as implicit:
        try:
            async with implicit.stage("tts", {"text": "hi"}):
                raise OSError("no audio device")
        except Exception:
            raise WrappedStageError("tts stage failed")  # noqa: B904
    assert dbg.flush(5)
    record = read_log(dbg.log_writer.last_path)  # type: ignore[arg-type]
    assert [s["stage_name"] for s in record["stages"]] == ["tts", "error"]
    spans = _trace(exporter, conv.trace_id)
    assert sorted(s.name for s in spans) == ["conversation", "llm"]  # no phantom bar
    root = next(s for s in spans if s.name == "conversation")
    assert root.attributes["error.type"] == "ValueError"
    assert [e.name for e in root.events] == []  # the failure is on the llm span only
    assert [(e.stage, e.status) for e in recorder.stages] == [("llm", "error"), ("tts", "error")]
    assert [c.status for c in recorder.conversations] == ["error", "error"]


def test_a_long_stack_trace_is_bounded(
    dbg: ConversationPipelineDebugger, exporter: InMemorySpanExporter
) -> None:
    def recurse(n: int) -> None:
        if n == 0:
            raise ValueError("deep failure " + "x" * 9000)
        recurse(n - 1)

    with pytest.raises(ValueError), dbg.conversation(turn=1) as conv, conv.stage("llm", {}):
        recurse(50)
    llm = next(s for s in _trace(exporter, conv.trace_id) if s.name == "llm")
    [event] = [e for e in llm.events if e.name == "exception"]
    stack = event.attributes["exception.stacktrace"]
    assert len(stack) <= STACK_LIMIT + len(TRUNCATION_MARK)
    # the most recent end (where the error is) is kept, the start is cut
    assert stack.startswith("[earlier frames truncated]") and stack.endswith("x" * 100 + "\n")


async def test_trace_show_prints_a_waterfall_from_a_log(
    dbg: ConversationPipelineDebugger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conv = await fake_turn(dbg)
    dbg.flush(5)
    assert cli_main(["trace", "show", "--last", "--dir", str(tmp_path / "logs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert conv.conversation_id in lines[0]
    assert [line.split()[0] for line in lines[1:]] == list(STAGES)
    assert all("|" in line and line.rstrip().endswith("ms") for line in lines[1:])
    assert cli_main(["trace", "show", str(tmp_path / "missing.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert cli_main(["trace", "show", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


async def test_the_per_turn_line_says_how_the_turn_ended(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    debugger = ConversationPipelineDebugger(output_dir=tmp_path, save_logs=False)
    with caplog.at_level(logging.INFO, logger="coda_otel.pipeline"):
        with debugger.conversation(session_id="s", turn=1) as conv:
            async with conv.stage("stt", {"text": "hi"}) as st:
                st.set_output({"transcript": "hi"})
        with pytest.raises(RuntimeError), debugger.conversation(session_id="s", turn=2) as conv:
            async with conv.stage("llm", {"query": "hi"}):
                raise RuntimeError("model exploded")
    debugger.close()
    lines = [r for r in caplog.records if r.getMessage().startswith("Turn ")]
    ok, failed = lines
    assert ok.levelno == logging.INFO and " ended completed " in ok.getMessage()
    assert failed.levelno == logging.WARNING
    assert " ended error (llm: RuntimeError)" in failed.getMessage()
    assert "llm [error]" in failed.getMessage()
