"""Redaction, truncation and summaries of conversation content."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coda_otel.sanitize import TRUNCATION_MARK, Sanitizer, luhn_valid, redact, size_of
from coda_otel.tracing.waterfall import Bar, Waterfall, render


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail bob.smith+x@example.co.uk now", "mail [EMAIL] now"),
        ("mail bob\u200b@exam\u200dple.com now", "mail [EMAIL] now"),  # zero-width split
        ("mail b\u00adob@example.com\u2060", "mail [EMAIL]"),  # soft hyphen, word joiner
        ("call +44 20\u200b7946 0958", "call [PHONE]"),
        ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("call +44 20 7946 0958", "call [PHONE]"),
        ("call (555) 123-4567", "call [PHONE]"),
        ("Authorization: Bearer eyJhbGciOi.abc-def_ghi", "Authorization: Bearer [TOKEN]"),
        ("api_key=abc123secret", "api_key=[SECRET]"),
        ("password: 'hunter2'", "password: [SECRET]"),
        ("use sk-proj1234567890abcdefXYZ", "use [API_KEY]"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [API_KEY]"),
        ("key 9f86d081884c7d659a2feaa0c55ad015: x", "key 9f86d081884c7d659a2feaa0c55ad015: x"),
        ("api_key=9f86d081884c7d659a2feaa0c55ad015", "api_key=[SECRET]"),  # by its context
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh [API_KEY]"),  # by its shape
        ("opaque Xy7Qk2LmN9pR4sT6vW8zA1bC3dE5fG7hJ9", "opaque [API_KEY]"),
        # keys after a prefix ("_" is a word character, so a leading \b never matched) ...
        ("OPENAI_API_KEY=hunter2secret", "OPENAI_API_KEY=[SECRET]"),
        ("export GITHUB_TOKEN=abc123def", "export GITHUB_TOKEN=[SECRET]"),
        ("DB_PASSWORD=x", "DB_PASSWORD=[SECRET]"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "AWS_SECRET_ACCESS_KEY=[SECRET]"),
        ("client_secret=shh&x=1", "client_secret=[SECRET]"),
        # ... and quoted JSON keys, camelCase included
        ('{"apiKey": "abc123xyz"}', '{"apiKey": [SECRET]}'),
        ('{"user": "ann", "password": "p@ss"}', '{"user": "ann", "password": [SECRET]}'),
        ("x=api_key=abc", "x=api_key=[SECRET]"),
    ],
)
def test_redacts_personal_data_and_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "meeting on 2024-01-15 at 10:30",
        "order 4111 1111 1111 1112 (fails Luhn, 16 digits)",
        "I have 3 cats and 12 dogs",
        "version 1.45.2",
        "max_tokens=256, input_tokens: 812",
        "The token is here: it works",
        "ratio=3:2 and key: value",
        # ids are not keys: memory ids, trace ids, digests, UUIDs
        "{'id': '3fb1da67ff1b4364a3f55c901d4cbdfc', 'score': 0.5}",
        "trace 177d0010346cf417a286bde897ff4424 span 9f86d081884c7d65",
        "digest 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "conversation 3FB1DA67-FF1B-4364-A3F5-5C901D4CBDFC",
    ],
)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def test_redaction_is_linear_on_adversarial_input() -> None:
    """100 kB of each shape: the old look-aheads rescanned from every boundary (O(n^2))."""
    unchanged = ["a-", "1 ", "@", "x=", "_token", "a@a.", "4111 ", "password"]
    redacted = {"12 34 56 ": "[PHONE] ", "sk-": "[API_KEY]", "a1b2-": "[API_KEY]-"}
    started = time.process_time()
    for shape in [*unchanged, *redacted]:
        text = (shape * (100_000 // len(shape) + 1))[:100_000]
        out = redact(text)
        assert out == text if shape in unchanged else out.startswith(redacted[shape]), shape
        assert Sanitizer().text(text, 8000).endswith(TRUNCATION_MARK)
    # One generous bound for the whole lot: ~0.3 s when linear, minutes when quadratic.
    assert time.process_time() - started < 10.0


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_truncation_and_switches() -> None:
    s = Sanitizer(max_length=10)
    assert s.text("a" * 25) == "a" * 10 + TRUNCATION_MARK
    assert s.text("short") == "short"
    raw = Sanitizer(redact=False)
    assert raw.text("bob@example.com") == "bob@example.com"
    with pytest.raises(ValueError, match="positive"):
        Sanitizer(max_length=0)


def test_summary_keeps_sizes_and_redacted_previews() -> None:
    s = Sanitizer(preview_length=20)
    summary = s.summarize(
        {"transcript": "mail me at bob@example.com please, soon", "audio": b"\0" * 3200, "n": 3}
    )
    assert summary["transcript"] == {
        "type": "str",
        "size": 39,
        "preview": "mail me at [EMAIL] p" + TRUNCATION_MARK,
    }
    assert summary["audio"] == {"type": "bytes", "size": 3200}
    assert summary["n"] == {"type": "int", "value": 3}
    assert s.content({"x": "bob@example.com"}) == {
        "x": {"type": "str", "size": 15, "preview": "[EMAIL]"}
    }
    s.capture_content = True
    assert s.content({"x": "bob@example.com", "b": b"12"}) == {"x": "[EMAIL]", "b": "<2 bytes>"}


def test_size_of_counts_content_not_containers() -> None:
    assert size_of({"a": "xyz", "b": [b"12", "3"], "c": None}) == 6
    assert size_of(memoryview(b"abcd")) == 4


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "CODA_CAPTURE_CONTENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CODA_REDACT", raising=False)
    assert not Sanitizer.from_env().capture_content and Sanitizer.from_env().redact
    monkeypatch.setenv("CODA_CAPTURE_CONTENT", "true")
    monkeypatch.setenv("CODA_REDACT", "false")
    s = Sanitizer.from_env()
    assert s.capture_content and not s.redact


emails = st.from_regex(r"[a-z]{3,10}\.[a-z]{2,8}@[a-z]{3,10}\.(com|org|net)", fullmatch=True)


@given(prefix=st.text(max_size=200), email=emails, suffix=st.text(max_size=200))
def test_an_email_never_survives_and_length_is_bounded(
    prefix: str, email: str, suffix: str
) -> None:
    s = Sanitizer(max_length=1000)
    out = s.text(f"{prefix} {email} {suffix}")
    assert email not in out
    assert len(out) <= 1000 + len(TRUNCATION_MARK)


def test_waterfall_bars_are_to_scale() -> None:
    wf = Waterfall(
        "c1",
        100.0,
        "error",
        "ab" * 16,
        [Bar("stt", 0, 50), Bar("llm", 50, 25, "error", note="ValueError"), Bar("tts", 75, 25)],
    )
    lines = render(wf, width=20).splitlines()
    assert lines[0] == f"conversation c1  trace {'ab' * 16}  error  total 100.0 ms"
    bars = [line.split("|")[1] for line in lines[1:]]
    assert bars == ["█" * 10 + " " * 10, " " * 10 + "█" * 5 + " " * 5, " " * 15 + "█" * 5]
    assert lines[2].endswith("ERROR ValueError")
    with pytest.raises(ValueError, match="width"):
        render(wf, width=3)


def test_a_turn_under_a_request_span_is_drawn_from_its_own_root() -> None:
    """A served turn's ``conversation`` sits under the request's SERVER span: ``trace show``
    finds it as the last turn, draws the turn from its root, and leaves the request out."""
    from coda_otel.tracing.waterfall import from_otlp

    def span(name: str, sid: str, parent: str | None, start: int, end: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "traceId": "ab" * 16,
            "spanId": sid,
            "name": name,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
        }
        if parent:
            out["parentSpanId"] = parent
        return out

    ms = 1_000_000
    spans = [
        span("POST /v1/turns", "01" * 8, None, 0, 50 * ms),
        span("conversation", "02" * 8, "01" * 8, 1 * ms, 41 * ms),
        span("stt", "03" * 8, "02" * 8, 1 * ms, 11 * ms),
        span("llm", "04" * 8, "02" * 8, 11 * ms, 41 * ms),
        span("chat echo", "05" * 8, "04" * 8, 12 * ms, 40 * ms),
    ]
    requests = [{"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}]
    drawn = from_otlp(requests)
    names = [bar.name for bar in drawn.bars]
    assert names == ["stt", "llm", "chat echo"]  # not the request around the turn
    assert drawn.bars[0].offset_ms == 0.0 and drawn.bars[2].depth == 1
    assert drawn.total_ms == 40.0
