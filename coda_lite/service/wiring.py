"""Small adapters of the composition root (with :mod:`coda_lite.service.app`): where
coda-otel's tools meet Coda Lite's stages.

    llm = ObservedLLM(llm, inference, config.llm)     # the GenAI inference span + metrics
    llm = CachedLLM(llm, ObservedTTLCache(256, 600.0, name="llm_response", debugger=caches))
    watch_memory_size(metrics, pipeline)              # memory gauges read at scrape time
    on_write = memory_write_report(metrics)           # failed memory writes: counted, logged
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate

from coda_lite.config import LlmConfig
from coda_lite.llm.types import LLMResult
from coda_lite.pipeline.build import Pipeline
from coda_lite.stats import resource_error
from coda_otel.cache.observed import ObservedTTLCache
from coda_otel.inference import InferenceCall, InferenceObserver
from coda_otel.metrics import CodaMetrics
from coda_otel.write_guard import BurstLog

__all__ = [
    "CachedLLM",
    "ObservedLLM",
    "memory_write_report",
    "trace_headers",
    "watch_memory_size",
]


class CachedLLM:
    """Answers a repeated (model, query, context) from an observed TTL cache."""

    def __init__(self, llm: Any, cache: ObservedTTLCache[str, Any]) -> None:
        self.llm = llm
        self.cache = cache
        self.model = getattr(llm, "model", "unknown")

    def key(self, query: str, context: Sequence[Mapping[str, Any]]) -> str:
        payload = json.dumps([self.model, query, [c.get("content") for c in context]])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> Any:
        return await self.cache.aget_or_compute(
            self.key(query, context), lambda: self.llm.generate(query, context)
        )

    async def stream(self, query: str, context: Sequence[Mapping[str, Any]]) -> AsyncIterator[Any]:
        """A cached answer at once; else the model's stream, kept when it completes."""
        key = self.key(query, context)
        cached = self.cache.get(key)
        if cached is not None:
            yield cached.text
            yield cached
            return
        started = time.perf_counter()
        async for item in self.llm.stream(query, context):
            if not isinstance(item, str):
                self.cache.debugger.record_load(self.cache.name, time.perf_counter() - started)
                self.cache.put(key, item)
            yield item

    async def aclose(self) -> None:
        closer = getattr(self.llm, "aclose", None)
        if closer is not None:
            await closer()


class ObservedLLM:
    """Each model call as a GenAI inference span (a child of the llm stage's span) with the
    GenAI client metrics; the span is current while the backend sends its request, so an HTTP
    backend's request carries its ``traceparent``. Answers pass through unchanged."""

    def __init__(self, llm: Any, inference: InferenceObserver, config: LlmConfig) -> None:
        self.llm = llm
        self.inference = inference
        self.config = config
        self.model = getattr(llm, "model", "unknown")
        self.provider = getattr(llm, "provider", "") or "unknown"
        base_url = getattr(llm, "base_url", None)  # HTTP backends: the model is a server
        parts = urlsplit(base_url) if isinstance(base_url, str) else None
        self.server = (parts.hostname, parts.port) if parts and parts.hostname else None

    def _start(self, streamed: bool) -> InferenceCall:
        address, port = self.server or (None, None)
        return self.inference.start(
            "chat",
            provider=self.provider,
            request_model=self.model,
            server_address=address,
            server_port=port,
            temperature=self.config.temperature,
            max_tokens=self.config.max_tokens,
            stream=streamed,
        )

    def _finish(self, call: InferenceCall, result: LLMResult) -> None:
        call.finish(
            finish_reasons=(result.finish_reason,),
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            response_model=result.response_model or None,
            usage_estimated=result.usage_estimated,
            output_text=result.text,
            input_messages=result.prompt,
        )

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> Any:
        call = self._start(streamed=False)
        try:
            with call.active():
                result = await self.llm.generate(query, context)
        except asyncio.CancelledError:
            call.interrupted()
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        self._finish(call, result)
        return result

    async def stream(self, query: str, context: Sequence[Mapping[str, Any]]) -> AsyncIterator[Any]:
        """The backend's stream, each step run with the inference span current."""
        call = self._start(streamed=True)
        items = self.llm.stream(query, context).__aiter__()
        try:
            while True:
                with call.active():
                    try:
                        item = await items.__anext__()
                    except StopAsyncIteration:
                        break
                if isinstance(item, LLMResult):
                    self._finish(call, item)
                else:
                    call.first_chunk()
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            call.interrupted()  # the turn was cut short, or its reader stopped early
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        finally:
            if not call.ended:  # the stream ended without a result
                call.fail(RuntimeError("the model's stream ended without a result"))
            closer = getattr(items, "aclose", None)
            if closer is not None:
                await closer()

    async def aclose(self) -> None:
        closer = getattr(self.llm, "aclose", None)
        if closer is not None:
            await closer()


def trace_headers() -> dict[str, str]:
    """The current trace context as request headers (``traceparent``, ...), by the global
    propagator (``OTEL_PROPAGATORS``): a model server's spans join the turn's trace."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def watch_memory_size(metrics: CodaMetrics, pipeline: Pipeline) -> None:
    """Read memory item counts at scrape time, from counters kept in memory.

    The snapshot emitter sets these gauges too, but only every N operations; with a function
    attached, the scrape-time value is the one exported. No lock and no SQL: a scrape never
    waits behind a turn (or behind another process holding the database).
    """

    def reader(read: Callable[[], int]) -> Callable[[], float]:
        def value() -> float:
            try:
                return float(read())
            except Exception:  # a store mid-restart must not break the scrape
                return math.nan

        return value

    memory, long_term = pipeline.memory, pipeline.long_term
    items = metrics.memory_items
    items.labels(tier="short_term").set_function(reader(lambda: memory.short_term_turns))
    items.labels(tier="long_term").set_function(reader(lambda: long_term.approx_count))


def memory_write_report(metrics: CodaMetrics) -> Callable[[BaseException | None], None]:
    """The long-term store's ``on_write`` hook: each failed write counts in
    ``coda_memory_write_failures_total{reason}`` (``resource`` when the disk or memory ran
    out) and a burst of them is logged once with its cause; the next write that goes through
    ends the burst with one line. The component's heartbeat says the same on ``/health``."""
    burst = BurstLog("memory_store")

    def heard(outcome: BaseException | None) -> None:
        if outcome is None:
            burst.succeeded()
            return
        reason = "resource" if resource_error(outcome) else "error"
        metrics.memory_write_failures.labels(reason=reason).inc()
        burst.failed(f"{type(outcome).__name__}: {outcome}; cause: {reason}")

    return heard
