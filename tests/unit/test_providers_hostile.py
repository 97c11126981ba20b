"""What a misbehaving or hostile model endpoint can do to heedls: nothing worse than a failure that
serves `local`, within the deadline, in bounded memory, with a message the user can act on.

Each case is what a real endpoint was seen to do to the providers over loopback (compression
bombs, JSON nested 100 000 deep, lone surrogates and terminal escapes in the text, megabytes of
suggestion or of choices, redirects, resets, unusable keys and endpoints)."""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from heedls.server.config import ProviderConfig
from heedls.server.providers import http as http_mod
from heedls.server.providers.base import CompletionRequest, ProviderError
from heedls.server.providers.breaker import CircuitBreaker
from heedls.server.providers.fallback import FallbackProvider
from heedls.server.providers.http import HTTPProvider, make_client
from heedls.server.providers.llamacpp import LlamaCppProvider
from heedls.server.providers.ollama import OllamaProvider
from heedls.server.providers.openai import OpenAIProvider
from heedls.server.providers.registry import build_provider

from tests.support.static_local import StaticLocal

pytestmark = pytest.mark.timeout(30)

KEY = "sk-hostile-DO-NOT-LOG-5555"
REQ = CompletionRequest(prefix="def add(a, b):\n    ", suffix="\n", path="/ws/calc.py", line=1, character=4)
PROVIDERS: list[type[HTTPProvider]] = [OpenAIProvider, OllamaProvider, LlamaCppProvider]
# Far more than the 4 MB a response may have, far less than what an inflated bomb takes.
MEMORY_BOUND = 64 * 1024 * 1024


def config_for(cls: type[HTTPProvider], **kw: Any) -> ProviderConfig:
    base = ProviderConfig(name=cls.name, endpoint="http://llm.test:8000", model="coder", api_key=KEY)  # type: ignore[arg-type]
    return replace(base, **kw)


def answer(cls: type[HTTPProvider], text: str) -> dict[str, Any]:
    """A well-formed FIM answer of each API carrying `text`."""
    if cls is OpenAIProvider:
        return {"choices": [{"text": text}]}
    if cls is OllamaProvider:
        return {"response": text, "done": True}
    return {"content": text}


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return make_client(httpx.MockTransport(handler))


def deflate_bomb(megabytes: int) -> bytes:
    """A raw deflate stream of `megabytes` MB of zeros, about 1000 times smaller."""
    block = b"\0" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    return piece * megabytes + zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).flush()


def gzip_bomb(megabytes: int) -> bytes:
    """A valid gzip stream of `megabytes` MB of zeros, about 1000 times smaller."""
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(b"\0" * (1 << 20), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + deflate_bomb(megabytes) + struct.pack("<II", crc, (megabytes << 20) & 0xFFFFFFFF)


async def peak_memory(work: Callable[[], Any]) -> tuple[Any, int]:
    """(what `work()` returned or raised, the peak of Python allocations while it ran)."""
    tracemalloc.start()
    try:
        try:
            result: Any = await work()
        except Exception as exc:  # noqa: BLE001 - the caller looks at it
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- compression bombs -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "gzip, gzip"])
async def test_a_compressed_answer_is_read_and_a_compression_bomb_is_refused_without_inflating_it(
    encoding: str,
) -> None:
    json_answer = b'{"choices": [{"text": "return a + b"}]}'
    # 256 KB that inflate to 256 MB
    good, bomb = (zlib.compress(json_answer), deflate_bomb(256)) if encoding == "deflate" else (
        gzip.compress(json_answer), gzip_bomb(256))
    if encoding == "gzip, gzip":  # the second layer makes each read chunk inflate a thousandfold twice
        good, bomb = gzip.compress(good), gzip.compress(bomb)
    bodies = iter([good, bomb])

    def handler(request: httpx.Request) -> httpx.Response:
        # A stream, as from the network (`content=` would have httpx inflate it in this handler).
        return httpx.Response(200, headers={"Content-Encoding": encoding}, stream=httpx.ByteStream(next(bodies)))

    async with client_for(handler) as client:
        provider = OpenAIProvider(config_for(OpenAIProvider), client)
        (candidate,) = await provider.complete(REQ, 5.0)
        assert candidate.text == "return a + b"
        outcome, peak = await peak_memory(lambda: provider.complete(REQ, 5.0))
    assert isinstance(outcome, ProviderError) and "larger than" in str(outcome)
    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MB allocated to refuse a {len(bomb)}-byte answer"


async def test_a_compression_bomb_over_a_real_socket_serves_local_and_counts_a_failure() -> None:
    body = gzip.compress(gzip_bomb(256))
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip, gzip\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    with one_shot_server(head + body) as endpoint:
        async with make_client() as client:
            breaker = CircuitBreaker(3, 30)
            local = StaticLocal()
            provider = FallbackProvider(
                OpenAIProvider(ProviderConfig(name="openai", endpoint=endpoint), client), local, breaker, 3000
            )
            candidates, peak = await peak_memory(lambda: provider.complete(REQ, 3.0))
    assert [c.provider for c in candidates] == ["local"]
    assert breaker.consecutive_failures == 1
    assert "larger than" in (provider.last_error or "")
    assert peak < MEMORY_BOUND, f"{peak / 2**20:.0f} MB allocated"


# -- JSON that is not an answer ------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"])
async def test_json_nested_100k_deep_is_a_failure_that_says_so(body: bytes) -> None:
    async with client_for(lambda request: httpx.Response(200, content=body)) as client:
        with pytest.raises(ProviderError, match="nested too deeply"):
            await OpenAIProvider(config_for(OpenAIProvider), client).complete(REQ, 5.0)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, b"[" * 100_000 + b"]" * 100_000),
        ({"Content-Encoding": "gzip"}, gzip_bomb(64)),
    ],
    ids=["nested-json", "gzip-bomb"],
)
async def test_a_rate_limit_whatever_its_body_still_opens_the_breaker_for_the_time_asked(
    headers: dict[str, str], body: bytes
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "120", **headers}, stream=httpx.ByteStream(body))

    async with client_for(handler) as client:
        breaker = CircuitBreaker(3, 30)
        provider = FallbackProvider(OpenAIProvider(config_for(OpenAIProvider), client), StaticLocal(), breaker, 1500)
        (candidate,) = await provider.complete(REQ, 1.5)
    assert candidate.provider == "local"
    assert breaker.state == "open" and breaker.retry_in() > 100
    assert "HTTP 429" in (provider.last_error or "")


# -- text no editor or terminal should get ---------------------------------------------------------------


@pytest.mark.parametrize("cls", PROVIDERS)
@pytest.mark.parametrize(
    "text",
    ["x = 1  # \ud800", "print(1)\x1b]0;owned\x07\x1b[2J", "x = 1\x9b31m", "x\x7f = 1", "x = 1\x08\x08"],
    ids=["lone-surrogate", "osc-and-csi", "c1-csi", "del", "backspace"],
)
async def test_text_with_lone_surrogates_or_control_characters_is_garbage(cls: type[HTTPProvider], text: str) -> None:
    # A lone surrogate crashed `heedls complete` (stdout cannot encode it); escapes reached the
    # terminal and the editor. Tabs, form feeds and line breaks of either kind are code.
    payloads = iter([answer(cls, "if x:\r\n\treturn 1\x0c\n"), answer(cls, text)])
    # json.dumps writes a lone surrogate as the escape "\ud800", as a server's JSON would have it.
    async with client_for(lambda request: httpx.Response(200, content=json.dumps(next(payloads)).encode())) as client:
        provider = cls(config_for(cls), client)
        (candidate,) = await provider.complete(REQ, 5.0)
        assert candidate.text == "if x:\r\n\treturn 1\x0c\n"
        with pytest.raises(ProviderError, match="control characters|lone surrogates"):
            await provider.complete(REQ, 5.0)


# -- more than was asked for ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", PROVIDERS)
async def test_an_answer_far_longer_than_asked_for_is_cut_to_the_whole_lines_that_fit(cls: type[HTTPProvider]) -> None:
    lines = "    total = total + 1\n" * 100_000  # 2.2 MB for a 64-token request
    one_line = "x" * 2_000_000
    payloads = iter([answer(cls, lines), answer(cls, one_line)])
    async with client_for(lambda request: httpx.Response(200, json=next(payloads))) as client:
        provider = cls(config_for(cls), client)
        (candidate,) = await provider.complete(REQ, 5.0)
        assert 0 < len(candidate.text) <= http_mod.MAX_SUGGESTION_CHARS
        assert candidate.text.endswith("total = total + 1\n") and lines.startswith(candidate.text)
        with pytest.raises(ProviderError, match="without a line break"):
            await provider.complete(REQ, 5.0)


async def test_only_as_many_choices_as_were_asked_for_are_read() -> None:
    # 150 000 choices took 1.9 s to turn into candidates (past the deadline) and 64 MB a request
    # stayed in the suggestion cache.
    many = {"choices": [{"text": f"x{i} = {i}\n", "message": {"content": f"patch {i}"}} for i in range(20_000)]}
    async with client_for(lambda request: httpx.Response(200, json=many)) as client:
        provider = OpenAIProvider(config_for(OpenAIProvider), client)
        assert [c.text for c in await provider.complete(REQ, 5.0)] == ["x0 = 0\n"]
        chat = await provider.chat([{"role": "user", "content": "fix"}], max_tokens=50, temperature=0, n=2, deadline_s=5.0)
        assert chat == ["patch 0", "patch 1"]
        chat_mode = OpenAIProvider(config_for(OpenAIProvider, mode="chat"), client)
        assert [c.text for c in await chat_mode.complete(REQ, 5.0)] == ["patch 0"]


# -- what the user is told ----------------------------------------------------------------------------


async def test_a_redirect_is_not_followed_and_the_message_says_what_to_fix() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(307, headers={"Location": "http://elsewhere.test/steal"})

    async with client_for(handler) as client:
        with pytest.raises(ProviderError, match=r"HTTP 307 redirect \(not followed: set provider.endpoint"):
            await OpenAIProvider(config_for(OpenAIProvider), client).complete(REQ, 5.0)
    assert [r.url.host for r in requests] == ["llm.test"]  # the key never went elsewhere


async def test_a_reset_connection_is_said_in_words() -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("", request=request)  # what a TCP reset looks like: no text at all

    async with client_for(reset) as client:
        with pytest.raises(ProviderError, match="connection broke while reading") as caught:
            await OllamaProvider(config_for(OllamaProvider), client).complete(REQ, 5.0)
    assert "ReadError: ReadError" not in str(caught.value)


async def test_a_key_with_non_ascii_characters_is_reported_as_such_and_never_shown() -> None:
    key = "sk-pasted-from-a-web-page\u2019"  # a typographic apostrophe came with it
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    async with client_for(handler) as client:
        with pytest.raises(ProviderError, match="API key has non-ASCII characters") as caught:
            await OpenAIProvider(config_for(OpenAIProvider, api_key=key), client).complete(REQ, 5.0)
    assert "sk-pasted" not in str(caught.value) and not sent


@pytest.mark.parametrize(
    ("endpoint", "shown", "why"),
    [
        ("http://127.0.0.1:99999", "'http://127.0.0.1:99999'", "Port out of range"),
        ("http://[::1", "'http://[::1'", "Invalid IPv6 URL"),
        ("http://user:secret@host:99999/v1?token=abc", "'http://host:99999/v1'", "Port out of range"),
    ],
)
def test_an_unusable_endpoint_is_named_in_the_warning_without_its_credentials(endpoint: str, shown: str, why: str) -> None:
    warnings: list[str] = []
    local = StaticLocal()
    assert build_provider(ProviderConfig(name="openai", endpoint=endpoint), local, on_warning=warnings.append) is local
    (warning,) = warnings
    assert shown in warning and why in warning and "local" in warning
    assert "secret" not in warning and "token" not in warning and "abc" not in warning


async def test_an_endpoint_with_a_query_string_keeps_it_after_the_api_path() -> None:
    """Azure OpenAI's endpoints carry `?api-version=…`: the API path goes before it (it was
    appended after it, into the query), and a fragment is never sent."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"choices": [{"text": "x = 1"}]})

    endpoint = "https://example.test/openai/deployments/coder/v1?api-version=2024-02-01#top"
    async with client_for(handler) as client:
        provider = OpenAIProvider(config_for(OpenAIProvider, endpoint=endpoint), client)
        await provider.complete(REQ, 5.0)
    assert seen == ["https://example.test/openai/deployments/coder/v1/completions?api-version=2024-02-01"]
    assert "api-version" not in provider.where  # a query may hold a credential: never in messages


# -- a real loopback server for what MockTransport cannot send ----------------------------------------


class one_shot_server:
    """A loopback server that answers every connection with the same bytes, then closes it."""

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # the accept timeout: look at `stop` again
                continue
            with conn:
                try:
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(self.response)
                except OSError:
                    pass

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
