"""Real OTLP trace receivers on 127.0.0.1 for tests: gRPC and HTTP (protobuf).

Both are built from opentelemetry-proto's generated service and messages, keep every request
they receive, and can be waited on::

    with GrpcReceiver() as rx:                     # rx.endpoint == "http://127.0.0.1:<port>"
        ... export spans to rx.endpoint ...
        spans = rx.wait_for_spans(6)               # [(resource_attrs, span_proto), ...]
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support import free_port


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attributes(item: Any) -> dict[str, Any]:
    """A span's or resource's attributes as a plain dict."""
    return {kv.key: any_value(kv.value) for kv in item.attributes}


class _Store:
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._cond = threading.Condition()

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        with self._cond:
            return [
                (attributes(rs.resource), span)
                for req in self.requests
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def wait_for_spans(self, count: int, timeout_s: float = 10.0) -> list[tuple[dict, Span]]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.spans()) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} spans, got {len(self.spans())}")
                self._cond.wait(remaining)
        return self.spans()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: _Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
        self.store.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcReceiver(_Store):
    """An OTLP/gRPC TraceService on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    def __enter__(self) -> GrpcReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait(5)


class HttpReceiver(_Store):
    """An OTLP/HTTP endpoint accepting protobuf POSTs on /v1/traces."""

    def __init__(self) -> None:
        super().__init__()
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces" or "protobuf" not in self.headers.get(
                    "Content-Type", ""
                ):
                    self.send_error(404 if self.path != "/v1/traces" else 415)
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                store.add(request)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# --- a tiny fake pipeline that drives an observer like coda_lite's manager does -------------
STAGES = ("stt", "memory_retrieval", "llm", "memory_update", "tts")


def _embed(text: str) -> list[float]:
    return [float(len(text)), 0.5]


async def fake_turn(
    observer: Any,
    *,
    session_id: str | None = "session-1",
    turn: int = 1,
    transcript: str = "what is the weather tomorrow",
    fail_stage: str | None = None,
    cancel_stage: str | None = None,
) -> Any:
    """Five stages; memory retrieval embeds in a worker thread; returns the conversation scope."""
    import asyncio

    with observer.conversation(session_id=session_id, turn=turn) as conv:
        for stage in STAGES:
            async with conv.stage(stage, {"text": transcript, "audio_bytes": b"\0" * 64}) as st:
                await asyncio.sleep(0)
                if stage == fail_stage:
                    raise RuntimeError(f"{stage} failed for {transcript}")
                if stage == cancel_stage:
                    raise asyncio.CancelledError()
                if stage == "memory_retrieval":
                    vector = await asyncio.to_thread(_embed, transcript)
                    st.set_output({"context": vector})
                elif stage == "llm":
                    st.set_output({"response": f"You said: {transcript}"})
                    st.set_llm_usage(model="tiny-llm", input_tokens=12, output_tokens=7)
                else:
                    st.set_output({"result": transcript.upper()})
    return conv
