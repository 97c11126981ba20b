"""A real loopback HTTP server that speaks the parts of the LLM APIs heedls uses.

OpenAI-compatible (`/v1/completions`, `/v1/chat/completions`, `/v1/models`), Ollama
(`/api/generate`, `/api/chat`, `/api/tags`) and llama.cpp (`/infill`, `/completion`, `/health`),
with switchable misbehaviour so tests can exercise the fallback and the circuit breaker over real
sockets:

    ok           answer normally
    slow         answer normally after `delay_s`
    error        answer with HTTP `status` (default 500) and a JSON error body
    garbage      200 with a body that is not JSON
    empty        200 with an empty body
    wrong_shape  200 with JSON that has none of the expected fields
    hang         accept the request and never answer (until the server stops)
    close        read the request, then close the connection without a response

Usage (pytest): import the fixture into a test module
    from tests.support.fake_llm_server import fake_llm  # noqa: F401
and take `fake_llm` as an argument; or use `with FakeLLMServer() as server:`.

Scripting (e.g. the repair engine's patches): `server.script_chat("answer 1", "answer 2")` queues
chat answers (one per choice, in order); `server.script_completions(...)` does the same for FIM
routes; `server.responder = fn(path, body) -> str` computes answers. Every request is recorded in
`server.requests` (method, path, headers, parsed JSON body).

Standalone (for end-to-end tests driving a separate `heedls serve` process):
    python -m tests.support.fake_llm_server --behaviour slow --delay 5
prints the base URL on the first line of stdout and serves until killed.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

BEHAVIOURS = ("ok", "slow", "error", "garbage", "empty", "wrong_shape", "hang", "close")

GARBAGE = b"\x89PNG\r\n<html><body>502 upstream said: {not json"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was empty / not JSON
    raw: bytes = b""
    at: float = field(default_factory=time.monotonic)


class FakeLLMServer:
    def __init__(
        self,
        *,
        completion: str = "return a + b\n",
        chat_default: str = "return a + b\n",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.completion = completion
        self.chat_default = chat_default
        self.responder: Callable[[str, Any], str] | None = None
        # Token log-probabilities to report with every answer (None: the API's "not asked" shape).
        self.logprobs: list[float] | None = None
        # Ollama: does the "model" have an infill template? False -> 400 "does not support insert".
        self.ollama_insert = True
        # Routes answered with 404 (e.g. {"/infill"} to play an old llama.cpp server).
        self.missing_routes: set[str] = set()
        self.model = "fake-coder"
        self.requests: list[RecordedRequest] = []
        self._behaviour = "ok"
        self._delay_s = 0.0
        self._status = 500
        self._times: int | None = None
        self._chat_queue: deque[str] = deque()
        self._completion_queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def behaviour(self) -> str:
        return self._behaviour

    def set_behaviour(
        self,
        behaviour: str,
        *,
        delay_s: float | None = None,
        status: int | None = None,
        times: int | None = None,
    ) -> None:
        """Switch behaviour; with `times`, only the next `times` requests misbehave, then "ok"."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {BEHAVIOURS}")
        with self._lock:
            self._behaviour = behaviour
            if delay_s is not None:
                self._delay_s = delay_s
            if status is not None:
                self._status = status
            self._times = times

    def script_chat(self, *answers: str) -> None:
        with self._lock:
            self._chat_queue.extend(answers)

    def script_completions(self, *answers: str) -> None:
        with self._lock:
            self._completion_queue.extend(answers)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> Self:
        # A short poll interval: shutdown() waits for the next poll, and tests stop servers often.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # lets hanging handlers go
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- used by the handler -----------------------------------------------------------------------
    def _take_behaviour(self) -> tuple[str, float, int]:
        with self._lock:
            current = (self._behaviour, self._delay_s, self._status)
            if self._times is not None and self._behaviour != "ok":
                self._times -= 1
                if self._times <= 0:
                    self._behaviour, self._times = "ok", None
            return current

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_text(self, path: str, body: Any, chat: bool) -> str:
        with self._lock:
            queue = self._chat_queue if chat else self._completion_queue
            if queue:
                return queue.popleft()
        if self.responder is not None:
            return self.responder(path, body)
        return self.chat_default if chat else self.completion

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; True when the full time passed."""
        return not self._release.wait(seconds)


def _make_handler(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real model servers
        timeout = 10  # idle keep-alive connections do not pin threads forever

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every answer (real servers set it too).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            path = self.path.split("?", 1)[0]
            server._record(RecordedRequest(method, path, dict(self.headers.items()), body, raw))
            behaviour, delay_s, status = server._take_behaviour()
            if behaviour == "hang":
                server._wait(120)
                self.close_connection = True
                return
            if behaviour == "close":
                self.close_connection = True
                return
            if behaviour == "slow" and not server._wait(delay_s):
                self.close_connection = True
                return
            if behaviour == "error":
                self._send(status, {"error": {"message": "the fake server was told to fail", "code": status}})
            elif behaviour == "garbage":
                self._send_bytes(200, GARBAGE, "application/json")
            elif behaviour == "empty":
                self._send_bytes(200, b"", "application/json")
            elif behaviour == "wrong_shape":
                self._send(200, {"object": "surprise", "data": [1, 2, 3]})
            else:
                self._answer(method, path, body if isinstance(body, dict) else {})

        # -- the APIs ------------------------------------------------------------------------------
        def _answer(self, method: str, path: str, body: dict[str, Any]) -> None:
            if path in server.missing_routes:
                self._send(404, {"error": {"message": f"File Not Found: {path}", "code": 404}})
                return
            if method == "GET":
                if path in ("/health", "/v1/health"):
                    self._send(200, {"status": "ok"})
                elif path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                elif path == "/api/tags":
                    self._send(200, {"models": [{"name": server.model, "model": server.model}]})
                else:
                    self._send(404, {"error": "not found"})
                return
            handler = {
                "/v1/completions": self._openai_completions,
                "/v1/chat/completions": self._openai_chat,
                "/api/generate": self._ollama_generate,
                "/api/chat": self._ollama_chat,
                "/infill": self._llamacpp_completion,
                "/completion": self._llamacpp_completion,
            }.get(path)
            if handler is None:
                self._send(404, {"error": {"message": f"File Not Found: {path}", "code": 404}})
                return
            handler(path, body)

        def _openai_completions(self, path: str, body: dict[str, Any]) -> None:
            n = int(body.get("n") or 1)
            choices = []
            for i in range(n):
                choice: dict[str, Any] = {
                    "index": i,
                    "text": server._next_text(path, body, chat=False),
                    "finish_reason": "stop",
                    "logprobs": None,
                }
                if server.logprobs is not None:
                    choice["logprobs"] = {
                        "tokens": [f"t{j}" for j in range(len(server.logprobs))],
                        "token_logprobs": list(server.logprobs),
                    }
                choices.append(choice)
            self._send(200, {"id": "cmpl-fake", "object": "text_completion", "model": server.model, "choices": choices})

        def _openai_chat(self, path: str, body: dict[str, Any]) -> None:
            n = int(body.get("n") or 1)
            choices = []
            for i in range(n):
                choice: dict[str, Any] = {
                    "index": i,
                    "message": {"role": "assistant", "content": server._next_text(path, body, chat=True)},
                    "finish_reason": "stop",
                }
                if server.logprobs is not None:
                    choice["logprobs"] = {
                        "content": [{"token": f"t{j}", "logprob": v} for j, v in enumerate(server.logprobs)]
                    }
                choices.append(choice)
            self._send(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": server.model, "choices": choices})

        def _ollama_generate(self, path: str, body: dict[str, Any]) -> None:
            if body.get("suffix") and not body.get("raw") and not server.ollama_insert:
                self._send(400, {"error": f'registry.ollama.ai/library/{server.model} does not support insert'})
                return
            answer: dict[str, Any] = {
                "model": body.get("model", server.model),
                "created_at": "2026-01-01T00:00:00Z",
                "response": server._next_text(path, body, chat=False),
                "done": True,
                "done_reason": "stop",
            }
            if server.logprobs is not None:
                answer["logprobs"] = [{"token": f"t{j}", "logprob": v} for j, v in enumerate(server.logprobs)]
            self._send(200, answer)

        def _ollama_chat(self, path: str, body: dict[str, Any]) -> None:
            self._send(
                200,
                {
                    "model": body.get("model", server.model),
                    "created_at": "2026-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": server._next_text(path, body, chat=True)},
                    "done": True,
                    "done_reason": "stop",
                },
            )

        def _llamacpp_completion(self, path: str, body: dict[str, Any]) -> None:
            answer: dict[str, Any] = {
                "content": server._next_text(path, body, chat=False),
                "model": server.model,
                "stop": True,
                "stop_type": "eos",
            }
            if server.logprobs is not None and body.get("n_probs"):
                answer["completion_probabilities"] = [
                    {"id": j, "token": f"t{j}", "logprob": v, "top_logprobs": []}
                    for j, v in enumerate(server.logprobs)
                ]
            self._send(200, answer)

        # -- plumbing ------------------------------------------------------------------------------
        def _send(self, status: int, payload: Any) -> None:
            self._send_bytes(status, json.dumps(payload).encode(), "application/json")

        def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up (its deadline passed): nothing to do.
                self.close_connection = True

    return Handler


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    """A started FakeLLMServer on a free loopback port, stopped after the test."""
    with FakeLLMServer() as server:
        yield server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="ok")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds, for --behaviour slow")
    parser.add_argument("--status", type=int, default=500, help="HTTP status, for --behaviour error")
    parser.add_argument("--completion", default="return a + b\n")
    args = parser.parse_args(argv)
    server = FakeLLMServer(completion=args.completion, chat_default=args.completion, host=args.host, port=args.port)
    server.set_behaviour(args.behaviour, delay_s=args.delay, status=args.status)
    print(server.url, flush=True)
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
