"""A real HTTP server speaking the OpenAI chat API, for tests that need a model server.

    with FakeOpenAI() as model:                 # 127.0.0.1, a free port
        config = f"llm:\\n  backend: openai\\n  url: {model.url}\\n  model: fake\\n"
        ...
        model.traceparents                      # the traceparent header of each chat request

It answers its ``/v1/models`` probe at once and each chat completion at once with "Fine."
(usage: 3 prompt, 1 completion tokens, model ``fake-2026``), except a message saying "hang
please", which it never answers (a server whose probe looks fine while its calls hang).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAI"]

RESPONSE_MODEL = "fake-2026"


class FakeOpenAI:
    """See the module docstring; also usable without ``with`` (call :meth:`close`)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.traceparents: list[str | None] = []
        stop, seen = self.stop, self.traceparents

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
                seen.append(self.headers.get("traceparent"))
                if b"hang please" in body:
                    stop.wait(300)  # never answers while the test runs
                    return
                self._json({"model": RESPONSE_MODEL,
                            "choices": [{"message": {"content": "Fine."},
                                         "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 3, "completion_tokens": 1}})  # fmt: skip

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
