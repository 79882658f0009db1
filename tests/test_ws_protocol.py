"""The debug WebSocket's protocol tables, published schema and bind-security rule (no server)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from coda_otel.ws.protocol import ProtocolError, parse_client_message
from coda_otel.ws.schema import SCHEMA_PATH, build_schema, load_schema, schema_json, validator_for
from coda_otel.ws.server import InsecureBindError, TokenBucket, check_bind_security, is_loopback

TOKEN = "s3cret-token-0123456789"


def test_published_schema_is_generated_from_the_code() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_json(), (
        "coda_otel/ws/schemas/ws-messages.json is stale: "
        "python -m coda_otel.ws.schema > coda_otel/ws/schemas/ws-messages.json"
    )
    jsonschema.Draft202012Validator.check_schema(load_schema())
    assert load_schema() == json.loads(json.dumps(build_schema()))


@pytest.mark.parametrize(
    "message",
    [
        {"type": "enable_debugging", "id": "a", "data": {"feature": "all", "enabled": False}},
        {"type": "get_health_status"},
        {"type": "subscribe", "id": 7, "data": {"events": ["cache_stats"]}},
        {"type": "text_input", "data": {"text": "hi", "session_id": "s-1"}},
        {
            "type": "text_input",
            "data": {
                "text": "hi",
                "trace_context": {
                    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    "tracestate": "congo=t61rcWkgMzE",
                    "baggage": "userId=alice",
                },
            },
        },
        {"type": "inject_fault", "data": {"component": "llm", "fault": "crash"}},
        {"type": "reset_component", "id": "r", "data": {"component": "memory_store"}},
    ],
)
def test_valid_commands_parse_and_match_the_schema(message: dict[str, object]) -> None:
    validator_for("client_message").validate(message)
    parsed = parse_client_message(json.dumps(message))
    assert parsed.type == message["type"]
    assert parsed.id == message.get("id")
    assert parsed.data == message.get("data", {})


@pytest.mark.parametrize(
    ("raw", "code", "rid", "words"),
    [
        ("{nope", "bad_json", None, "not valid JSON"),
        ("[" * 100_000, "bad_json", None, "not valid JSON"),
        ("[1, 2]", "bad_message", None, "JSON object"),
        ('{"id": 1}', "bad_message", 1, '"type"'),
        ('{"type": "x", "id": true}', "bad_message", None, "id must be"),
        ('{"type": "launch_rockets", "id": "r"}', "unknown_type", "r", "launch_rockets"),
        ('{"type": "get_cache_stats", "params": {}}', "bad_message", None, "params"),
        ('{"type": "get_cache_stats", "data": []}', "invalid_params", None, "object"),
        (
            '{"type": "enable_debugging", "data": {"feature": "all"}}',
            "invalid_params",
            None,
            "enabled",
        ),
        (
            '{"type": "enable_debugging", "data": {"feature": "all", "enabled": "yes"}}',
            "invalid_params",
            None,
            "true or false",
        ),
        (
            '{"type": "enable_debugging", "data": {"feature": "gpu", "enabled": true}}',
            "invalid_params",
            None,
            "tracing",
        ),
        (
            '{"type": "subscribe", "data": {"events": "cache_stats"}}',
            "invalid_params",
            None,
            "list of strings",
        ),
        (
            '{"type": "subscribe", "data": {"events": ["secrets"]}}',
            "invalid_params",
            None,
            "secrets",
        ),
        ('{"type": "text_input", "data": {"text": "  "}}', "invalid_params", None, "empty"),
        (
            '{"type": "text_input", "data": {"text": "hi", "session_id": "../etc"}}',
            "invalid_params",
            None,
            "session_id",
        ),
        ('{"type": "text_input", "data": {"text": 5}}', "invalid_params", None, "string"),
        (
            '{"type": "text_input", "data": {"text": "hi", "trace_context": "00-ab"}}',
            "invalid_params",
            None,
            "must be an object",
        ),
        (
            '{"type": "text_input", "data": {"text": "hi", '
            '"trace_context": {"traceparent": "00-xyz-1-01"}}}',
            "invalid_params",
            None,
            "not a W3C traceparent",
        ),
        (
            '{"type": "text_input", "data": {"text": "hi", "trace_context": {"b3": "1"}}}',
            "invalid_params",
            None,
            "b3",
        ),
        ('{"type": "reset_component", "id": 9}', "invalid_params", 9, "component"),
        (
            '{"type": "reset_component", "data": {"component": "../tts"}}',
            "invalid_params",
            None,
            "does not match",
        ),
        (
            '{"type": "reset_component", "data": {"component": ["tts"]}}',
            "invalid_params",
            None,
            "must be a string",
        ),
        (
            '{"type": "get_cache_stats", "data": {"verbose": true}}',
            "invalid_params",
            None,
            "verbose",
        ),
    ],
)
def test_bad_messages_raise_protocol_errors_that_say_why(
    raw: str, code: str, rid: object, words: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw)
    assert info.value.code == code
    assert info.value.request_id == rid
    assert words in info.value.message


def test_long_text_is_refused() -> None:
    with pytest.raises(ProtocolError, match="at most 4000"):
        parse_client_message(json.dumps({"type": "text_input", "data": {"text": "a" * 4001}}))


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost"])
def test_loopback_binds_need_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind_security(host, None)
    check_bind_security([host, "127.0.0.1"], None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", None, "192.168.1.5", "coda.example"])
def test_exposed_binds_without_a_token_refuse_and_say_why(host: str | None) -> None:
    with pytest.raises(InsecureBindError, match="CODA_DEBUG_TOKEN") as info:
        check_bind_security(host, None)
    assert "127.0.0.1" in str(info.value)
    with pytest.raises(InsecureBindError):
        check_bind_security(host, "")
    check_bind_security(host, TOKEN)  # a token makes it acceptable


def test_a_mixed_host_list_is_judged_by_its_exposed_host() -> None:
    with pytest.raises(InsecureBindError, match=r"0\.0\.0\.0"):
        check_bind_security(["127.0.0.1", "0.0.0.0"], None)


def test_short_tokens_are_refused() -> None:
    with pytest.raises(InsecureBindError, match="at least 16"):
        check_bind_security("0.0.0.0", "hunter2")


def test_token_bucket_allows_bursts_then_refills_with_time() -> None:
    now = [100.0]
    bucket = TokenBucket(2.0, 3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back at 2/s
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 100  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 3
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, 1)


def test_lone_surrogates_are_invalid_params() -> None:
    """JSON may escape a lone surrogate; it is not text, and must not reach the pipeline."""
    with pytest.raises(ProtocolError) as info:
        parse_client_message('{"type": "text_input", "id": 7, "data": {"text": "\\ud800"}}')
    assert info.value.code == "invalid_params" and info.value.request_id == 7


def test_reset_component_result_schema_needs_the_component_and_its_status() -> None:
    result = validator_for("message_reset_component_result")
    frame = {"type": "reset_component_result", "id": "r", "seq": 2, "ts": "2026-01-01T00:00:00Z"}
    result.validate({**frame, "data": {"component": "tts", "status": "unknown", "restarts": 0}})
    with pytest.raises(jsonschema.ValidationError, match="status"):
        result.validate({**frame, "data": {"component": "tts"}})
