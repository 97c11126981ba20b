"""How long heedls stays away from a server that said how long to stay away, and when it asks again.

A `Retry-After` header on a 429 (rate limit) or a 503 (overloaded, loading a model, in maintenance:
what Azure OpenAI, vLLM, llama.cpp's server under load and reverse proxies send) opens the breaker
at once for that long, bounded by the breaker's 10-minute cap; the time is moved with a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from heedls.server import config as config_mod
from heedls.server.config import ProviderConfig
from heedls.server.providers import http as http_mod
from heedls.server.providers import ollama as ollama_mod
from heedls.server.providers.base import CompletionRequest, ProviderError
from heedls.server.providers.breaker import MAX_COOLDOWN_S, CircuitBreaker
from heedls.server.providers.fallback import FallbackProvider
from heedls.server.providers.http import make_client
from heedls.server.providers.llamacpp import LlamaCppProvider
from heedls.server.providers.ollama import OllamaProvider
from heedls.server.providers.openai import OpenAIProvider

from tests.support.fake_llm_server import FakeLLMServer, fake_llm  # noqa: F401 - the fixture
from tests.support.static_local import StaticLocal

pytestmark = pytest.mark.timeout(30)

REQ = CompletionRequest(prefix="def add(a, b):\n    ", suffix="\n", path="/ws/calc.py", line=1, character=4)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A MockTransport handler answering from a list of (status, headers, body) in turn (the last repeats)."""

    def __init__(self, *answers: tuple[int, dict[str, str], Any]) -> None:
        self.answers = list(answers)
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        status, headers, body = self.answers[min(self.requests, len(self.answers) - 1)]
        self.requests += 1
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, headers=headers, content=content)


OK = (200, {}, {"choices": [{"text": "return a + b"}]})


def provider_for(server: Callable[[httpx.Request], httpx.Response], clock: Clock,
                 **kw: Any) -> tuple[FallbackProvider, CircuitBreaker, httpx.AsyncClient, list[str]]:
    config = replace(ProviderConfig(name="openai", endpoint="http://llm.test:8000/v1", model="coder"), **kw)
    client = make_client(httpx.MockTransport(server))
    breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s, clock=clock)
    warnings: list[str] = []
    provider = FallbackProvider(OpenAIProvider(config, client), StaticLocal(), breaker, 1500, on_warning=warnings.append)
    return provider, breaker, client, warnings


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_on_a_rate_limit_or_an_overloaded_server_opens_the_breaker_for_that_long(status: int) -> None:
    clock = Clock()
    server = Server((status, {"Retry-After": "120"}, {"error": {"message": "the server is busy"}}), OK)
    provider, breaker, client, warnings = provider_for(server, clock)
    async with client:
        for _ in range(5):
            (candidate,) = await provider.complete(REQ, 1.5)
            assert candidate.provider == "local"
        assert server.requests == 1  # asked once, then left alone as told
        assert breaker.state == "open" and breaker.retry_in() == 120
        assert warnings == [f"provider openai at http://llm.test:8000/v1 unavailable "
                            f"(http://llm.test:8000/v1/completions: HTTP {status}); serving local suggestions, "
                            f"retrying in 120 s"]
        clock.now += 119
        await provider.complete(REQ, 1.5)
        assert server.requests == 1
        clock.now += 1  # the time asked for is over: one probe, which succeeds and closes the breaker
        (candidate,) = await provider.complete(REQ, 1.5)
    assert candidate.provider == "openai" and server.requests == 2
    assert breaker.state == "closed" and breaker.cooldown_s == 30  # the next outage starts from the setting again
    assert warnings[-1] == "provider openai at http://llm.test:8000/v1 is back"


async def test_a_503_whatever_its_body_still_honours_retry_after() -> None:
    clock = Clock()
    server = Server((503, {"Retry-After": "45", "Content-Type": "text/html"}, b"<html>\xff\xfe upstream overloaded"))
    provider, breaker, client, _ = provider_for(server, clock)
    async with client:
        await provider.complete(REQ, 1.5)
        await provider.complete(REQ, 1.5)
    assert server.requests == 1 and breaker.state == "open" and breaker.retry_in() == 45


@pytest.mark.parametrize("header", ["86400", "Fri, 31 Dec 9999 23:59:59 GMT"], ids=["a-day", "far-future-date"])
async def test_a_503_asking_for_more_than_the_breakers_cap_is_held_to_the_cap(header: str) -> None:
    clock = Clock()
    server = Server((503, {"Retry-After": header}, {"error": "maintenance"}), OK)
    provider, breaker, client, _ = provider_for(server, clock)
    async with client:
        await provider.complete(REQ, 1.5)
        assert breaker.state == "open" and breaker.retry_in() == MAX_COOLDOWN_S
        clock.now += MAX_COOLDOWN_S
        (candidate,) = await provider.complete(REQ, 1.5)
    assert candidate.provider == "openai" and server.requests == 2


async def test_a_503_probe_that_fails_again_waits_what_the_server_asks_or_twice_as_long_as_before() -> None:
    clock = Clock()
    server = Server((503, {"Retry-After": "100"}, {"error": "loading model"}),
                    (503, {"Retry-After": "100"}, {"error": "loading model"}),
                    (500, {}, {"error": "crashed"}))
    provider, breaker, client, _ = provider_for(server, clock)
    async with client:
        await provider.complete(REQ, 1.5)
        assert breaker.retry_in() == 100
        clock.now += 100
        await provider.complete(REQ, 1.5)  # the probe: another 503 asking for 100 s
        assert server.requests == 2 and breaker.state == "open" and breaker.retry_in() == 100
        clock.now += 100
        await provider.complete(REQ, 1.5)  # the probe: a plain failure doubles the wait
        assert server.requests == 3 and breaker.state == "open" and breaker.retry_in() == 200


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "0"}, {"Retry-After": "soon"}], ids=["none", "zero", "junk"])
async def test_a_503_without_a_usable_retry_after_is_one_failure_like_any_other(headers: dict[str, str]) -> None:
    clock = Clock()
    server = Server((503, headers, {"error": "busy"}))
    provider, breaker, client, _ = provider_for(server, clock)
    async with client:
        await provider.complete(REQ, 1.5)
        assert breaker.state == "closed" and breaker.consecutive_failures == 1
        await provider.complete(REQ, 1.5)
        await provider.complete(REQ, 1.5)
    assert server.requests == 3 and breaker.state == "open" and breaker.retry_in() == 30


async def test_retry_after_on_other_error_statuses_is_not_a_reason_to_stay_away() -> None:
    clock = Clock()
    server = Server((500, {"Retry-After": "300"}, {"error": "oops"}), OK)
    provider, breaker, client, _ = provider_for(server, clock)
    async with client:
        await provider.complete(REQ, 1.5)
        assert breaker.state == "closed"
        (candidate,) = await provider.complete(REQ, 1.5)
    assert candidate.provider == "openai"


async def test_chat_honours_a_503_retry_after_too() -> None:
    clock = Clock()
    server = Server((503, {"Retry-After": "60"}, {"error": "busy"}))
    provider, breaker, client, _ = provider_for(server, clock)
    async with client:
        assert await provider.chat([{"role": "user", "content": "fix"}], max_tokens=10, temperature=0.0,
                                   deadline_s=1.5) == []
        assert await provider.chat([{"role": "user", "content": "fix"}], max_tokens=10, temperature=0.0,
                                   deadline_s=1.5) == []
    assert server.requests == 1 and breaker.retry_in() == 60


# -- Ollama: a model without an infill template, said precisely, and not for good -------------------------


OLLAMA = ProviderConfig(name="ollama", endpoint="http://localhost:11434", model="llama3")
# What Ollama's /api/generate answers for `suffix` with a model without an infill template
# (server/images.go CheckCapabilities, routes.go handleScheduleError): the model's full name first.
NO_INSERT = "registry.ollama.ai/library/llama3:latest does not support insert"


class Ollama:
    """/api/generate of an Ollama whose model has an infill template or not (`insert`), or that
    answers every `suffix` request with `refusal` (a confused server, a proxy)."""

    def __init__(self, insert: bool = False, refusal: str = NO_INSERT, raw_status: int = 200) -> None:
        self.insert, self.refusal, self.raw_status = insert, refusal, raw_status
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if body.get("raw"):
            if self.raw_status != 200:
                return httpx.Response(self.raw_status, json={"error": "server busy"})
            return httpx.Response(200, json={"response": "return a + b", "done": True})
        if body.get("suffix") and not self.insert:
            return httpx.Response(400, json={"error": self.refusal})
        return httpx.Response(200, json={"response": "return a + b", "done": True})

    def modes(self) -> list[str]:
        return ["raw" if b.get("raw") else "suffix" for b in self.bodies]


@pytest.mark.parametrize(
    "refusal",
    [NO_INSERT, "llama3 does not support insert", "hf.co/org/Model-GGUF:Q4_K_M does not support completion\ninsert"],
    ids=["full-name", "short-name", "two-capabilities"],
)
def test_ollamas_own_refusal_of_suffix_is_recognised(refusal: str) -> None:
    assert ollama_mod.says_no_insert(400, refusal)


@pytest.mark.parametrize(
    "detail",
    [
        "invalid options: insert",  # the word, in another message
        "template: :1:12: executing \"\" at <.Suffix>: cannot insert here; the model does not support insert",
        "<html><body>400 Bad Request: proxy does not support insert</body></html>",
        "llama3 does not support insert. Also: the prompt was 'def insert(x):'",
        "llama3 does not support tools",
    ],
    ids=["word-only", "sentence-around-it", "proxy-page", "text-after-it", "other-capability"],
)
async def test_a_400_that_merely_mentions_insert_is_a_failure_and_switches_nothing(detail: str) -> None:
    server = Ollama(refusal=detail)
    async with make_client(httpx.MockTransport(server)) as client:
        provider = OllamaProvider(OLLAMA, client)
        for _ in range(2):
            with pytest.raises(ProviderError, match="HTTP 400"):
                await provider.complete(REQ, 2.0)
    assert server.modes() == ["suffix", "suffix"] and not provider.raw_fim
    assert not ollama_mod.says_no_insert(400, detail)


async def test_raw_mode_lasts_a_while_then_the_model_is_asked_with_suffix_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="heedls.providers")
    server = Ollama(insert=False)
    async with make_client(httpx.MockTransport(server)) as client:
        provider = OllamaProvider(OLLAMA, client)
        [first] = await provider.complete(REQ, 2.0)
        [second] = await provider.complete(REQ, 2.0)
        assert (first.source, second.source) == ("raw-fim", "raw-fim")
        assert server.modes() == ["suffix", "raw", "raw"]
        assert "has no infill template (Ollama: does not support insert); using provider.fimTemplate for 600 s" in caplog.text
        server.insert = True  # `ollama create` gave the model a template
        provider.raw_until -= ollama_mod.RAW_FIM_RETRY_S  # RAW_FIM_RETRY_S have passed
        [third] = await provider.complete(REQ, 2.0)
    assert third.source == "fim" and server.modes()[-1] == "suffix"
    assert "takes suffix again; using its infill template" in caplog.text


async def test_the_switch_is_made_only_once_the_raw_request_has_worked() -> None:
    server = Ollama(insert=False, raw_status=503)
    async with make_client(httpx.MockTransport(server)) as client:
        provider = OllamaProvider(OLLAMA, client)
        with pytest.raises(ProviderError, match="HTTP 503"):
            await provider.complete(REQ, 2.0)
        assert not provider.raw_fim  # an outage decided nothing about the model
        server.raw_status = 200
        [candidate] = await provider.complete(REQ, 2.0)
    assert candidate.source == "raw-fim" and provider.raw_fim
    assert server.modes() == ["suffix", "raw", "suffix", "raw"]


# -- a temperature the provider's API refuses is refused when the settings are read --------------------


def provider_settings(project: dict[str, Any], settings: dict[str, Any] | None = None) -> tuple[ProviderConfig, list[str]]:
    config, warnings = config_mod.load(None, None, {"provider": settings} if settings else None,
                                       project=({"provider": project}, []))
    return config.provider, warnings


@pytest.mark.parametrize("value", [2.5, 3, 100])
def test_an_openai_temperature_above_2_is_refused_with_a_warning_and_the_default_kept(value: float) -> None:
    provider, warnings = provider_settings({"name": "openai", "endpoint": "https://api.openai.com/v1",
                                            "temperature": value})
    assert provider.temperature == 0.0
    assert warnings == [f"pyproject.toml [tool.heedls].provider.temperature: {float(value)!r} is above 2, the most the "
                        f"openai API accepts (it would refuse every request); using 0.0"]


def test_a_refused_temperature_in_the_editors_settings_keeps_the_projects() -> None:
    provider, warnings = provider_settings({"name": "openai", "temperature": 1.5}, {"temperature": 2.5})
    assert provider.temperature == 1.5
    assert warnings == ["settings.provider.temperature: 2.5 is above 2, the most the openai API accepts (it would "
                        "refuse every request); using 1.5"]


def test_switching_to_openai_under_a_temperature_it_refuses_says_so() -> None:
    provider, warnings = provider_settings({"name": "ollama", "temperature": 3}, {"name": "openai"})
    assert (provider.name, provider.temperature) == ("openai", 0.0)
    assert warnings == ["settings.provider.name: the openai API accepts a temperature of at most 2, not the 3.0 set "
                        "before (it would refuse every request); using 0.0"]


@pytest.mark.parametrize("name", ["ollama", "llamacpp"])
def test_ollama_and_llamacpp_take_temperatures_above_2(name: str) -> None:
    provider, warnings = provider_settings({"name": name, "temperature": 3.5})
    assert provider.temperature == 3.5 and warnings == []


def test_openai_takes_2_exactly() -> None:
    provider, warnings = provider_settings({"name": "openai", "temperature": 2})
    assert provider.temperature == 2.0 and warnings == []


# -- a name lookup that hangs: one lookup per host, on heedls' own thread, whatever the requests do -----


class HangingResolver:
    """socket.getaddrinfo where `host` hangs until released (then fails, as a resolver timing out
    does) and every other name is looked up as usual; records the threads it was called on."""

    def __init__(self, host: str, answer: list[Any] | None = None) -> None:
        self.host = host
        self.answer = answer
        self.release = threading.Event()
        self.threads: list[str] = []
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if (host.decode() if isinstance(host, bytes) else host) != self.host:
            return self.real(host, port, *args, **kw)
        self.threads.append(threading.current_thread().name)
        if self.answer is not None:
            return self.answer
        self.release.wait(20)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A resolver of the test's own (nothing kept from other tests)."""
    fresh = http_mod.Resolver()
    monkeypatch.setattr(http_mod, "_resolver", fresh)
    return fresh


async def test_requests_to_a_host_whose_lookup_hangs_share_one_lookup_off_the_event_loops_pool(
    monkeypatch: pytest.MonkeyPatch, resolver: http_mod.Resolver
) -> None:
    hanging = HangingResolver("hang.test")
    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    config = ProviderConfig(name="openai", endpoint="http://hang.test:8000/v1", model="coder", breaker_failures=1000)
    try:
        async with make_client() as client:
            provider = FallbackProvider(OpenAIProvider(config, client), StaticLocal(),
                                        CircuitBreaker(1000, 30), 300)
            for _ in range(12):  # typing: each request superseded by the next keystroke
                task = asyncio.create_task(provider.complete(REQ, 0.3))
                await asyncio.sleep(0.02)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            for _ in range(3):  # pausing: each request runs out of time and serves local
                (candidate,) = await provider.complete(REQ, 0.3)
                assert candidate.provider == "local"
            assert provider.last_error == "no answer within 240 ms"
            # The loop's own pool is free for the server's other work (syntax check, ruff, tests).
            assert await asyncio.to_thread(lambda: "free") == "free"
        assert resolver.in_flight() == 1
        assert hanging.threads == ["heedls-dns hang.test"]  # one lookup, on heedls' thread
    finally:
        hanging.release.set()


async def test_a_failed_lookup_is_a_failure_that_names_it_and_the_next_request_looks_up_again(
    monkeypatch: pytest.MonkeyPatch, resolver: http_mod.Resolver
) -> None:
    hanging = HangingResolver("gone.test")
    hanging.release.set()  # fails at once
    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    config = ProviderConfig(name="openai", endpoint="http://gone.test:8000/v1", model="coder")
    async with make_client() as client:
        provider = FallbackProvider(OpenAIProvider(config, client), StaticLocal(), CircuitBreaker(3, 30), 1500)
        (candidate,) = await provider.complete(REQ, 1.5)
        await provider.complete(REQ, 1.5)
    assert candidate.provider == "local"
    assert provider.last_error == "http://gone.test:8000/v1/completions: ConnectError: [Errno -3] Temporary failure in name resolution"
    assert len(hanging.threads) == 2 and resolver.in_flight() == 0  # failures are not kept


async def test_a_host_name_is_looked_up_once_and_connected_by_address_ipv6_first_then_ipv4(
    monkeypatch: pytest.MonkeyPatch, resolver: http_mod.Resolver, fake_llm: FakeLLMServer,  # noqa: F811
) -> None:
    # The name resolves to an IPv6 address nobody listens on, then the IPv4 one the server has.
    answer = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", fake_llm.port, 0, 0)),
              (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", fake_llm.port))]
    named = HangingResolver("model-server.test", answer)
    monkeypatch.setattr(socket, "getaddrinfo", named)
    config = ProviderConfig(name="openai", endpoint=f"http://model-server.test:{fake_llm.port}/v1", model="coder")
    async with make_client(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        provider = OpenAIProvider(config, client)
        first = await provider.complete(REQ, 5.0)
        second = await provider.complete(REQ, 5.0)
    assert [c.text for c in first + second] == ["return a + b\n"] * 2
    assert len(named.threads) == 1  # the second connection used the answer kept for LOOKUP_TTL_S
    assert fake_llm.requests[0].headers.get("Host") == f"model-server.test:{fake_llm.port}"


# -- what a server says about its answer: numbers and names kept within what readers can take ------------


@pytest.mark.parametrize(
    "logprobs",
    [[-1e308, -1e308], [5.0, 0.5], [True, False], ["__inf__", -0.5], ["-0.1", None, {"x": 1}]],
    ids=["sum-overflows", "positive", "booleans", "overflowed-to-inf", "not-numbers"],
)
async def test_token_logprobs_of_any_shape_give_a_finite_logprob_and_a_confidence_in_0_1(logprobs: list[Any]) -> None:
    body = json.dumps({"choices": [{"text": "return a + b", "logprobs": {"token_logprobs": logprobs}}]})
    body = body.replace('"__inf__"', "-1e400")
    server = Server((200, {}, body.encode()))
    async with make_client(httpx.MockTransport(server)) as client:
        config = ProviderConfig(name="openai", endpoint="http://llm.test:8000/v1", model="coder")
        [candidate] = await OpenAIProvider(config, client).complete(REQ, 2.0)
    for value in (candidate.logprob, candidate.confidence):
        assert value is None or (math.isfinite(value) and not isinstance(value, bool))
    assert candidate.logprob is None or candidate.logprob <= 0.0
    assert candidate.confidence is None or 0.0 <= candidate.confidence <= 1.0
    json.dumps({"logprob": candidate.logprob, "confidence": candidate.confidence}, allow_nan=False)  # the event store's JSON


async def test_a_probability_above_1_from_llamacpp_is_no_logprob_above_0() -> None:
    body = {"content": "return a + b", "completion_probabilities": [
        {"content": "return", "probs": [{"tok_str": "return", "prob": 7.0}]}, {"logprob": 3.0}]}
    server = Server((200, {}, body))
    async with make_client(httpx.MockTransport(server)) as client:
        [candidate] = await LlamaCppProvider(ProviderConfig(name="llamacpp", endpoint="http://llm.test:8080"),
                                             client).complete(REQ, 2.0)
    assert candidate.logprob == 0.0 and candidate.confidence == 1.0


@pytest.mark.parametrize(
    "answered", ["x" * 100_000, "coder\x1b[2J", {"name": "coder"}, ""], ids=["100-kb", "escape", "object", "empty"]
)
async def test_a_model_name_no_event_store_should_keep_is_replaced_by_the_configured_one(answered: Any) -> None:
    server = Server((200, {}, {"model": answered, "choices": [{"text": "return a + b", "finish_reason": {"x": [1] * 9}}]}))
    async with make_client(httpx.MockTransport(server)) as client:
        config = ProviderConfig(name="openai", endpoint="http://llm.test:8000/v1", model="coder")
        [candidate] = await OpenAIProvider(config, client).complete(REQ, 2.0)
    assert candidate.model == "coder" and candidate.meta == {"finish_reason": None}


async def test_the_name_of_the_model_that_really_answered_is_kept() -> None:
    # OpenAI answers "gpt-4o-mini" with the dated snapshot that served it: that is what the events say.
    server = Server((200, {}, {"model": "gpt-4o-mini-2024-07-18", "choices": [{"text": "x", "finish_reason": "stop"}]}))
    async with make_client(httpx.MockTransport(server)) as client:
        config = ProviderConfig(name="openai", endpoint="http://llm.test:8000/v1", model="gpt-4o-mini")
        [candidate] = await OpenAIProvider(config, client).complete(REQ, 2.0)
    assert candidate.model == "gpt-4o-mini-2024-07-18" and candidate.meta == {"finish_reason": "stop"}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'data: {"choices": [{"text": "return"}]}\n\ndata: [DONE]\n\ndata: {"choices": [{"text": "late"}]}\n\n',
         "server-sent events: the server streamed although asked not to"),
        (b'{"response": "return", "done": false}\n{"response": " a + b", "done": true}\n',
         "one JSON object a line: the server streamed although asked not to"),
    ],
    ids=["sse-with-data-after-done", "ndjson"],
)
async def test_a_stream_where_one_answer_was_asked_for_is_a_failure_that_says_so(body: bytes, said: str) -> None:
    server = Server((200, {}, body))
    async with make_client(httpx.MockTransport(server)) as client:
        config = ProviderConfig(name="openai", endpoint="http://llm.test:8000/v1", model="coder")
        provider = FallbackProvider(OpenAIProvider(config, client), StaticLocal(), CircuitBreaker(3, 30), 1500)
        (candidate,) = await provider.complete(REQ, 1.5)
    assert candidate.provider == "local"
    assert provider.last_error == f"http://llm.test:8000/v1/completions: response is not JSON ({len(body)} bytes; {said})"
