"""A real Pipecat pipeline for tests: ``PipelineWorker`` + ``WorkerRunner``, observed by coda-otel.

    async with running(Pipeline([...]), observer) as worker:
        await worker.queue_frames([TranscriptionFrame("hi", "user", "now")])
        await eventually(lambda: events.conversations)
    # the pipeline has ended (EndFrame) when the block exits

Also scripted processors for the cases real services do not make on demand: an LLM that
streams given pieces and can be held (a stall, an interruption mid-answer) or fail, and a TTS
that turns each piece into one audio chunk at once. Importing this module needs pipecat-ai:
test modules skip on a laptop without it (and fail under ``CI=true``) before importing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.observers.base_observer import BaseObserver
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from tests.support import IN_CI


def quiet_pipecat() -> None:
    """Pipecat logs every frame hop at DEBUG through loguru: keep warnings only."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


@asynccontextmanager
async def running(
    pipeline: Pipeline, *observers: BaseObserver, start_timeout: float = 30.0
) -> AsyncIterator[PipelineWorker]:
    """Run ``pipeline`` until the block ends, then end it (EndFrame) and wait for the runner."""
    quiet_pipecat()
    worker = PipelineWorker(
        pipeline,
        observers=list(observers),
        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker: Any, _frame: Any) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(started.wait(), start_timeout)
        yield worker
    finally:
        if not task.done() and not worker.has_finished():
            await worker.queue_frame(EndFrame())
        try:
            await asyncio.wait_for(task, 60)
        except TimeoutError:
            task.cancel()
            pytest.fail("the Pipecat pipeline did not end within 60 s of its EndFrame")


def typed(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text, "user", "typed", finalized=True)


class ScriptedLLM(FrameProcessor):  # type: ignore[misc]
    """Answers a transcription with ``pieces``; ``hold`` pauses after ``hold_after`` pieces
    until it is set; ``fail`` pushes an ErrorFrame (with that exception) instead of the rest."""

    def __init__(
        self,
        pieces: Sequence[str],
        *,
        hold: asyncio.Event | None = None,
        hold_after: int = 0,
        fail: Exception | None = None,
    ) -> None:
        super().__init__()
        self.pieces = list(pieces)
        self.hold = hold
        self.hold_after = hold_after
        self.fail = fail

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if not isinstance(frame, TranscriptionFrame):
            return
        await self.push_frame(LLMFullResponseStartFrame())
        try:
            for i, piece in enumerate(self.pieces):
                if i == self.hold_after and self.hold is not None:
                    await self.hold.wait()
                if i == self.hold_after and self.fail is not None:
                    await self.push_error(f"the model failed: {self.fail}", exception=self.fail)
                    return
                await self.push_frame(LLMTextFrame(piece))
        finally:
            await self.push_frame(LLMFullResponseEndFrame())


class ScriptedTTS(FrameProcessor):  # type: ignore[misc]
    """Speaks every LLM text piece as one 10 ms chunk of silence, at once; ``spoke`` is set
    once a piece was spoken (everything pushed before it reaches observers before later
    frames do: an observer's queue keeps the push order)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = False
        self.spoke = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMTextFrame):
            if not self.started:
                self.started = True
                await self.push_frame(TTSStartedFrame())
            await self.push_frame(TTSAudioRawFrame(b"\0\0" * 160, 16000, 1))
            await self.push_frame(TTSTextFrame(frame.text, "word"))
            self.spoke.set()
            return
        if isinstance(frame, LLMFullResponseEndFrame) and self.started:
            self.started = False
            await self.push_frame(TTSStoppedFrame())
        await self.push_frame(frame, direction)


__all__ = ["IN_CI", "ScriptedLLM", "ScriptedTTS", "quiet_pipecat", "running", "typed"]
