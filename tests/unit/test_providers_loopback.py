"""The HTTP providers against a real loopback server speaking each API, over real sockets:
answers, misbehaviour falling back to local within the deadline, and the breaker's life cycle."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from heedls.server.config import ProviderConfig
from heedls.server.providers.base import CompletionRequest, Provider
from heedls.server.providers.fallback import FallbackProvider
from heedls.server.providers.http import HTTPProvider, make_client
from heedls.server.providers.llamacpp import LlamaCppProvider
from heedls.server.providers.ollama import OllamaProvider
from heedls.server.providers.openai import OpenAIProvider
from heedls.server.providers.registry import build_provider

from tests.support.fake_llm_server import FakeLLMServer, fake_llm  # noqa: F401 - fixture
from tests.support.static_local import StaticLocal

pytestmark = pytest.mark.timeout(60)

KEY = "sk-loopback-secret-0987654321"
REQ = CompletionRequest(prefix="def add(a, b):\n    ", suffix="\n", path="/ws/calc.py", line=1, character=4)
NAMES = ("openai", "ollama", "llamacpp")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:
        yield c


def config_for(name: str, server: FakeLLMServer, **kw: Any) -> ProviderConfig:
    base = ProviderConfig(name=name, endpoint=server.url, model="fake-coder", api_key=KEY)  # type: ignore[arg-type]
    return replace(base, **kw)


# -- each API, for real ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "path"),
    [(OpenAIProvider, "/v1/completions"), (OllamaProvider, "/api/generate"), (LlamaCppProvider, "/infill")],
)
async def test_fim_over_loopback(
    cls: type[HTTPProvider], path: str, fake_llm: FakeLLMServer, client: httpx.AsyncClient  # noqa: F811
) -> None:
    fake_llm.logprobs = [-0.25, -0.5]
    provider = cls(config_for(cls.name, fake_llm), client)
    (candidate,) = await provider.complete(REQ, 5.0)
    assert candidate.text == fake_llm.completion
    assert candidate.provider == cls.name
    assert candidate.logprob in (None, pytest.approx(-0.75))  # OpenAI reports them only when asked
    (request,) = fake_llm.requests
    assert request.path == path and request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert any(isinstance(v, str) and REQ.prefix in v for v in request.body.values())


@pytest.mark.parametrize(
    ("cls", "path"),
    [(OpenAIProvider, "/v1/chat/completions"), (OllamaProvider, "/api/chat"), (LlamaCppProvider, "/v1/chat/completions")],
)
async def test_chat_mode_completion_over_loopback(
    cls: type[HTTPProvider], path: str, fake_llm: FakeLLMServer, client: httpx.AsyncClient  # noqa: F811
) -> None:
    fake_llm.script_chat("```python\nreturn a + b\n```")
    provider = cls(config_for(cls.name, fake_llm, mode="chat"), client)
    (candidate,) = await provider.complete(REQ, 5.0)
    assert candidate.text == "return a + b" and candidate.source == "chat"
    assert [r.path for r in fake_llm.requests] == [path]


@pytest.mark.parametrize("cls", [OpenAIProvider, OllamaProvider, LlamaCppProvider])
async def test_scripted_chat_answers_come_back_in_order(
    cls: type[HTTPProvider], fake_llm: FakeLLMServer, client: httpx.AsyncClient  # noqa: F811
) -> None:
    """What the repair engine relies on: n answers from a scripted queue."""
    fake_llm.script_chat("patch A", "patch B", "patch C")
    provider = cls(config_for(cls.name, fake_llm), client)
    answers = await provider.chat(
        [{"role": "user", "content": "fix the bug"}], max_tokens=200, temperature=0.8, n=3, deadline_s=10.0
    )
    # concurrent requests may finish in any order; the set is what was scripted
    assert sorted(answers) == ["patch A", "patch B", "patch C"]
    assert await provider.chat([{"role": "user", "content": "again"}], max_tokens=10, temperature=0,
                               n=1, deadline_s=10.0) == [fake_llm.chat_default]


async def test_ollama_insertless_model_over_loopback(fake_llm: FakeLLMServer, client: httpx.AsyncClient) -> None:  # noqa: F811
    fake_llm.ollama_insert = False
    provider = OllamaProvider(config_for("ollama", fake_llm), client)
    (candidate,) = await provider.complete(REQ, 5.0)
    assert candidate.text == fake_llm.completion and candidate.source == "raw-fim"
    first, second = fake_llm.requests
    assert "suffix" in first.body and second.body["raw"] is True and "<|fim_middle|>" in second.body["prompt"]


async def test_old_llamacpp_without_infill_over_loopback(fake_llm: FakeLLMServer, client: httpx.AsyncClient) -> None:  # noqa: F811
    fake_llm.missing_routes = {"/infill"}
    provider = LlamaCppProvider(config_for("llamacpp", fake_llm), client)
    assert (await provider.complete(REQ, 5.0))[0].text == fake_llm.completion
    assert (await provider.complete(REQ, 5.0))[0].text == fake_llm.completion
    assert [r.path for r in fake_llm.requests] == ["/infill", "/completion", "/completion"]


# -- misbehaviour: local answers, within the deadline ---------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("behaviour", ["error", "garbage", "empty", "wrong_shape", "close", "hang", "slow"])
async def test_misbehaving_endpoint_falls_back_to_local_within_the_deadline(
    name: str, behaviour: str, fake_llm: FakeLLMServer, client: httpx.AsyncClient  # noqa: F811
) -> None:
    fake_llm.set_behaviour(behaviour, delay_s=20.0)
    local = StaticLocal()
    provider = build_provider(config_for(name, fake_llm, deadline_ms=400), local, client)
    assert isinstance(provider, FallbackProvider)
    start = time.monotonic()
    candidates = await provider.complete(REQ, 0.4)
    elapsed = time.monotonic() - start
    assert [c.text for c in candidates] == ["local_answer()"]
    assert local.calls == 1
    assert len(fake_llm.requests) >= 1  # the endpoint was tried ...
    assert provider.breaker.consecutive_failures == 1  # ... and its failure counted
    # The hang/slow server would keep us 20 s; the deadline (0.4 s) must cut it. The bound is
    # loose on purpose (shared CI cores); it separates "respected the deadline" from "waited".
    assert elapsed < 0.4 + 3.0


async def test_dead_endpoint_falls_back(client: httpx.AsyncClient) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    local = StaticLocal()
    config = ProviderConfig(name="openai", endpoint=f"http://127.0.0.1:{port}/v1", deadline_ms=500)
    provider = build_provider(config, local, client)
    assert [c.text for c in await provider.complete(REQ, 0.5)] == ["local_answer()"]
    assert isinstance(provider, FallbackProvider)
    assert "ConnectError" in (provider.status()["last_error"] or "")


# -- the breaker over real sockets ----------------------------------------------------------------------


async def test_breaker_opens_then_recovers_through_half_open(
    fake_llm: FakeLLMServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    clock = FakeClock()
    local = StaticLocal()
    config = config_for("openai", fake_llm, breaker_failures=3, breaker_cooldown_s=30, deadline_ms=1000)
    provider: Provider = build_provider(config, local, client, clock=clock)
    assert isinstance(provider, FallbackProvider)
    fake_llm.set_behaviour("error", status=503)
    caplog.set_level(logging.INFO, logger="heedls")

    for _ in range(3):
        assert (await provider.complete(REQ, 1.0))[0].provider == "local"
    assert provider.breaker.state == "open" and len(fake_llm.requests) == 3

    # open: the endpoint is not even asked, however many requests come
    for _ in range(10):
        assert (await provider.complete(REQ, 1.0))[0].provider == "local"
    assert len(fake_llm.requests) == 3

    # a failed probe after the cooldown re-opens with twice the cooldown
    clock.now += 30
    assert provider.breaker.state == "half_open"
    assert (await provider.complete(REQ, 1.0))[0].provider == "local"
    assert len(fake_llm.requests) == 4
    assert provider.breaker.state == "open" and provider.breaker.cooldown_s == 60
    clock.now += 30
    await provider.complete(REQ, 1.0)
    assert len(fake_llm.requests) == 4  # still cooling down

    # the endpoint comes back: the next probe closes the breaker
    fake_llm.set_behaviour("ok")
    clock.now += 30
    (candidate,) = await provider.complete(REQ, 1.0)
    assert candidate.provider == "openai" and candidate.text == fake_llm.completion
    assert provider.breaker.state == "closed" and provider.breaker.cooldown_s == 30
    assert (await provider.complete(REQ, 1.0))[0].provider == "openai"

    # one warning per state change, not one per failed request
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "unavailable" in w]) == 2  # opened, re-opened
    assert len([w for w in warnings if "is back" in w]) == 1
    assert "HTTP 503" in warnings[0] and fake_llm.url in warnings[0]
    assert all(KEY not in r.getMessage() for r in caplog.records)


async def test_concurrent_requests_in_half_open_send_a_single_probe(
    fake_llm: FakeLLMServer, client: httpx.AsyncClient  # noqa: F811
) -> None:
    clock = FakeClock()
    config = config_for("llamacpp", fake_llm, breaker_failures=1, breaker_cooldown_s=10, deadline_ms=3000)
    provider = build_provider(config, StaticLocal(), client, clock=clock)
    assert isinstance(provider, FallbackProvider)
    fake_llm.set_behaviour("error", times=1)
    await provider.complete(REQ, 3.0)
    assert provider.breaker.state == "open"
    clock.now += 10
    fake_llm.set_behaviour("slow", delay_s=0.3)
    results = await asyncio.gather(*(provider.complete(REQ, 3.0) for _ in range(5)))
    assert sorted(r[0].provider for r in results) == ["llamacpp"] + ["local"] * 4
    assert len(fake_llm.requests) == 2  # the first failure and the single probe
    assert provider.breaker.state == "closed"


def test_fake_server_runs_standalone_for_end_to_end_tests() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_llm_server", "--completion", "hello()"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        response = httpx.post(f"{url}/infill", json={"input_prefix": "x", "input_suffix": ""}, timeout=10)
        assert response.json()["content"] == "hello()"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
