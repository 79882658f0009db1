"""Span attributes for a model call and a turn's latency (OpenTelemetry GenAI conventions).

    llm_attributes(model="SmolLM2", input_tokens=80, output_tokens=12, provider="transformers",
                   streamed=True, time_to_first_chunk_s=0.21, messages=[...], response="Hi.",
                   sanitizer=sanitizer)
    # {'gen_ai.request.model': 'SmolLM2', 'gen_ai.usage.input_tokens': 80,
    #  'gen_ai.usage.output_tokens': 12,
    #  'gen_ai.provider.name': 'transformers', 'gen_ai.request.stream': True,
    #  'gen_ai.response.time_to_first_chunk': 0.21,
    #  'gen_ai.input.messages': '[{"role": "system", "parts": [...]}, ...]',   # capture on
    #  'gen_ai.output.messages': '[{"role": "assistant", "parts": [...]}]'}    # capture on

    latency_attributes({"voice_to_voice_us": 812345, "breakdown_us": {"retrieval": 3012}, ...})
    # {'coda.latency.voice_to_voice': 0.812345, 'coda.latency.breakdown.retrieval': 0.003012,..}

Messages are kept only when the sanitizer captures content, and redacted like all content.
A turn's latency mapping has the shape of ``coda_lite.pipeline.latency.TurnLatency.to_dict()``:
durations in integer microseconds (``*_us``), attributes in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from coda_otel.sanitize import Sanitizer

#: Latency keys (microseconds) and the span attribute (seconds) each becomes.
LATENCY_ATTRIBUTES: dict[str, str] = {
    "voice_to_voice_us": "coda.latency.voice_to_voice",
    "time_to_first_audio_us": "coda.latency.time_to_first_audio",
    "time_to_first_token_us": "coda.latency.time_to_first_token",
}


def messages_json(
    items: Sequence[Mapping[str, str]], sanitizer: Sanitizer, finish_reason: str | None = None
) -> str:
    """The GenAI message shape: ``[{"role", "parts": [{"type": "text", "content"}]}]``
    (output messages also carry ``finish_reason``)."""
    out: list[dict[str, Any]] = []
    for m in items:
        text = sanitizer.text(str(m.get("content", "")))
        message: dict[str, Any] = {
            "role": str(m.get("role", "user")),
            "parts": [{"type": "text", "content": text}],
        }
        if finish_reason is not None:
            message["finish_reason"] = finish_reason
        out.append(message)
    return json.dumps(out, ensure_ascii=False)


def llm_attributes(
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    sanitizer: Sanitizer,
    provider: str | None = None,
    streamed: bool | None = None,
    time_to_first_chunk_s: float | None = None,
    messages: Sequence[Mapping[str, str]] | None = None,
    response: str | None = None,
    response_model: str | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """The llm span's GenAI attributes (content only when ``sanitizer.capture_content``).

    ``gen_ai.response.model`` only when the backend said which model answered;
    ``finish_reason`` (``stop``, ``length``, ...) as the backend gave it.
    """
    attrs: dict[str, Any] = {
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": int(input_tokens),
        "gen_ai.usage.output_tokens": int(output_tokens),
    }
    if response_model:
        attrs["gen_ai.response.model"] = response_model
    if finish_reason:
        attrs["gen_ai.response.finish_reasons"] = [finish_reason]
    if provider:
        attrs["gen_ai.provider.name"] = provider
    if streamed is not None:
        attrs["gen_ai.request.stream"] = bool(streamed)
    if time_to_first_chunk_s is not None:
        attrs["gen_ai.response.time_to_first_chunk"] = float(time_to_first_chunk_s)
    if sanitizer.capture_content:
        if messages:
            attrs["gen_ai.input.messages"] = messages_json(messages, sanitizer)
        if response is not None:
            out = [{"role": "assistant", "content": response}]
            attrs["gen_ai.output.messages"] = messages_json(
                out, sanitizer, finish_reason=finish_reason or "stop"
            )
    return attrs


def latency_attributes(latency: Mapping[str, Any]) -> dict[str, Any]:
    """The root span's ``coda.latency.*`` attributes (seconds) from a latency mapping."""
    attrs: dict[str, Any] = {}
    for key, name in LATENCY_ATTRIBUTES.items():
        value = latency.get(key)
        if isinstance(value, int):
            attrs[name] = value / 1e6
    rate = latency.get("output_tokens_per_second")
    if isinstance(rate, (int, float)):
        attrs["coda.latency.output_tokens_per_second"] = float(rate)
    if isinstance(latency.get("streamed"), bool):
        attrs["coda.latency.streamed"] = latency["streamed"]
    for part, us in (latency.get("breakdown_us") or {}).items():
        if isinstance(us, int):
            attrs[f"coda.latency.breakdown.{part}"] = us / 1e6
    return attrs


def seconds(latency: Mapping[str, Any] | None, key: str) -> float | None:
    """One latency value in seconds (``key`` names the microsecond field), or None."""
    value = (latency or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) / 1e6 if key.endswith("_us") else float(value)
