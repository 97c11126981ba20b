"""HTTP providers against `httpx.MockTransport`: request shapes, parsing, keys, garbage, fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest
from heedls.server.config import ProviderConfig
from heedls.server.providers import http as http_mod
from heedls.server.providers.base import Candidate, CompletionRequest, ProviderError
from heedls.server.providers.breaker import CircuitBreaker
from heedls.server.providers.fallback import FallbackProvider
from heedls.server.providers.http import (
    CURSOR,
    aclose_shared_client,
    fill_template,
    make_client,
    post_json,
    shared_client,
)
from heedls.server.providers.llamacpp import LlamaCppProvider
from heedls.server.providers.ollama import OllamaProvider
from heedls.server.providers.openai import OpenAIProvider
from heedls.server.providers.registry import build_provider

from tests.support.static_local import StaticLocal

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-DO-NOT-LOG-1234567890abcdef"
REQ = CompletionRequest(
    prefix="def add(a, b):\n    ",
    suffix="\n\nprint(add(1, 2))\n",
    path="/ws/pkg/calc.py",
    line=1,
    character=4,
)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and answers from a script or a function."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def client_for(handler: Handler) -> httpx.AsyncClient:
    return make_client(httpx.MockTransport(handler))


def ok_json(payload: Any) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json=payload)


def openai_config(**kw: Any) -> ProviderConfig:
    base = ProviderConfig(name="openai", endpoint="http://llm.test:8000", model="coder", api_key=KEY)
    return replace(base, **kw)


# -- OpenAI-compatible ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://llm.test:8000", "http://llm.test:8000/v1/completions"),
        ("http://llm.test:8000/", "http://llm.test:8000/v1/completions"),
        ("http://llm.test:8000/v1", "http://llm.test:8000/v1/completions"),
        ("https://proxy.test/openai/v1/", "https://proxy.test/openai/v1/completions"),
    ],
)
async def test_openai_fim_request_shape(endpoint: str, url: str) -> None:
    rec = Recorder(ok_json({"model": "coder", "choices": [{"text": "return a + b", "finish_reason": "stop"}]}))
    async with client_for(rec) as client:
        provider = OpenAIProvider(openai_config(endpoint=endpoint), client)
        candidates = await provider.complete(REQ, 2.0)
    assert [str(r.url) for r in rec.requests] == [url]
    request = rec.requests[0]
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = rec.bodies()[0]
    assert body["prompt"] == f"<|fim_prefix|>{REQ.prefix}<|fim_suffix|>{REQ.suffix}<|fim_middle|>"
    assert "suffix" not in body
    assert body["model"] == "coder" and body["max_tokens"] == 64 and body["temperature"] == 0.0
    assert body["stream"] is False
    # the template's markers stop the middle; <|fim_middle|> is what the model must produce after
    assert body["stop"] == ["<|fim_prefix|>", "<|fim_suffix|>"]
    assert candidates == [
        Candidate(
            text="return a + b",
            provider="openai",
            model="coder",
            source="fim",
            meta={"finish_reason": "stop"},
        )
    ]


async def test_openai_fim_without_template_sends_the_suffix_field() -> None:
    rec = Recorder(ok_json({"choices": [{"text": "x"}]}))
    async with client_for(rec) as client:
        await OpenAIProvider(openai_config(fim_template=""), client).complete(REQ, 2.0)
    body = rec.bodies()[0]
    assert body["prompt"] == REQ.prefix and body["suffix"] == REQ.suffix
    assert "stop" not in body


def test_fim_template_substitutes_once_even_when_code_contains_placeholders() -> None:
    prefix = 'fmt = "{suffix} and {prefix}" + "{"\n'
    suffix = "}{prefix}"
    out = fill_template("<PRE> {prefix} <SUF>{suffix} <MID>", prefix, suffix)
    assert out == f"<PRE> {prefix} <SUF>{suffix} <MID>"


@pytest.mark.parametrize(
    ("template", "stops"),
    [
        (ProviderConfig().fim_template, ["<|fim_prefix|>", "<|fim_suffix|>"]),
        ("<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>", ["<fim_prefix>", "<fim_suffix>"]),
        ("<PRE> {prefix} <SUF>{suffix} <MID>", ["<PRE>", "<SUF>"]),
        ("<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>", ["<｜fim▁begin｜>", "<｜fim▁hole｜>"]),
        ("{prefix}", []),
    ],
)
def test_stop_sequences_come_from_the_template(template: str, stops: list[str]) -> None:
    assert http_mod.stop_tokens(template) == stops
    for marker in stops:
        assert http_mod.cut_at_special_tokens(f"x = 1\n{marker}junk") == "x = 1\n"


async def test_openai_single_line_request_stops_at_newline() -> None:
    rec = Recorder(ok_json({"choices": [{"text": "x"}]}))
    async with client_for(rec) as client:
        await OpenAIProvider(openai_config(), client).complete(replace(REQ, max_lines=1), 2.0)
    assert rec.bodies()[0]["stop"][0] == "\n"
    assert len(rec.bodies()[0]["stop"]) <= 4  # OpenAI rejects more


async def test_openai_cuts_leaked_fim_markers_and_drops_blank_choices() -> None:
    payload = {
        "choices": [
            {"text": "return a + b\n<|file_sep|>other.py\nimport os"},
            {"text": "   \n"},
        ]
    }
    rec = Recorder(ok_json(payload))
    async with client_for(rec) as client:
        candidates = await OpenAIProvider(openai_config(), client).complete(REQ, 2.0)
    assert [c.text for c in candidates] == ["return a + b\n"]


async def test_openai_logprobs_become_confidence() -> None:
    logprobs = [-0.1, -0.2, -0.3]
    payload = {"choices": [{"text": "return a + b", "logprobs": {"tokens": ["a", "b", "c"], "token_logprobs": logprobs}}]}
    rec = Recorder(ok_json(payload))
    async with client_for(rec) as client:
        provider = OpenAIProvider(openai_config(), client, logprobs=True)
        (candidate,) = await provider.complete(REQ, 2.0)
    assert rec.bodies()[0]["logprobs"] == 1
    assert candidate.logprob == pytest.approx(-0.6)
    expected = sum(math.exp(v) for v in logprobs) / 3
    assert candidate.confidence == pytest.approx(expected)
    assert 0 < candidate.confidence < 1  # type: ignore[operator]


async def test_openai_chat_mode_prompt_and_cleanup() -> None:
    answer = "Here you go:\n```python\nreturn a + b\n```\nThis adds the numbers."
    rec = Recorder(ok_json({"model": "gpt-x", "choices": [{"message": {"role": "assistant", "content": answer}}]}))
    async with client_for(rec) as client:
        (candidate,) = await OpenAIProvider(openai_config(mode="chat"), client).complete(REQ, 2.0)
    assert rec.paths() == ["/v1/chat/completions"]
    body = rec.bodies()[0]
    system, user = body["messages"]
    assert system["role"] == "system" and "nothing else" in system["content"] and CURSOR in system["content"]
    assert user["role"] == "user" and f"{REQ.prefix}{CURSOR}{REQ.suffix}" in user["content"]
    assert candidate.text == "return a + b"
    assert candidate.source == "chat" and candidate.model == "gpt-x"


async def test_chat_answer_that_retypes_the_current_line_is_trimmed() -> None:
    request = CompletionRequest(prefix="for i in range(len(", suffix="")
    rec = Recorder(ok_json({"choices": [{"message": {"content": "```\nfor i in range(len(items)):\n```"}}]}))
    async with client_for(rec) as client:
        (candidate,) = await OpenAIProvider(openai_config(mode="chat"), client).complete(request, 2.0)
    assert candidate.text == "items)):"


async def test_openai_chat_api_with_n_and_logprobs() -> None:
    payload = {
        "choices": [
            {"message": {"content": "patch one"}, "logprobs": {"content": [{"token": "p", "logprob": -0.5}]}},
            {"message": {"content": "patch two"}},
        ]
    }
    rec = Recorder(ok_json(payload))
    messages = [{"role": "user", "content": "fix it"}]
    async with client_for(rec) as client:
        answers = await OpenAIProvider(openai_config(), client).chat(
            messages, max_tokens=300, temperature=0.7, n=2, deadline_s=5.0
        )
    assert answers == ["patch one", "patch two"]
    body = rec.bodies()[0]
    assert body["messages"] == messages and body["n"] == 2 and body["max_tokens"] == 300
    assert body["temperature"] == 0.7


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>Bad gateway</html>"),
        httpx.Response(200, content=b""),
        httpx.Response(200, content=b"   "),
        httpx.Response(200, json={}),
        httpx.Response(200, json={"choices": []}),
        httpx.Response(200, json={"choices": [{"text": 42}]}),
        httpx.Response(200, json={"choices": [{"text": "a\x00\x00b"}]}),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, content=b'{"choices": [{"text": NaN}]}'),
        httpx.Response(500, json={"error": {"message": "boom"}}),
        httpx.Response(401, json={"error": {"message": "bad key"}}),
        httpx.Response(302, headers={"Location": "http://elsewhere.test/"}),
    ],
    ids=["html", "empty", "blank", "no-choices", "empty-choices", "text-not-str", "nul", "list", "nan",
         "500", "401", "redirect"],
)
async def test_garbage_and_errors_raise_provider_error(response: httpx.Response) -> None:
    async with client_for(lambda request: response) as client:
        with pytest.raises(ProviderError):
            await OpenAIProvider(openai_config(), client).complete(REQ, 2.0)


async def test_connection_errors_raise_provider_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with client_for(refuse) as client:
        with pytest.raises(ProviderError, match="ConnectError"):
            await OpenAIProvider(openai_config(), client).complete(REQ, 2.0)


async def test_response_size_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_mod, "MAX_RESPONSE_BYTES", 1000)
    big = {"choices": [{"text": "x" * 5000}]}
    async with client_for(ok_json(big)) as client:
        with pytest.raises(ProviderError, match="larger than"):
            await OpenAIProvider(openai_config(), client).complete(REQ, 2.0)


async def test_deadline_bounds_the_whole_exchange() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json={"choices": [{"text": "late"}]})

    async with make_client(httpx.MockTransport(slow)) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ProviderError, match="no answer within 200 ms"):
            await OpenAIProvider(openai_config(), client).complete(REQ, 0.2)
        assert loop.time() - start < 10  # bounded by the deadline, not by the 30 s answer


# -- keys -------------------------------------------------------------------------------------------


async def test_api_key_is_never_logged(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", KEY)
    config = openai_config(api_key="", api_key_env="MY_LLM_KEY")
    answers = iter(
        [
            httpx.Response(200, json={"choices": [{"text": "ok"}]}),
            # a server that echoes the header back in its error message
            httpx.Response(401, json={"error": {"message": f"invalid key Bearer {KEY}"}}),
            httpx.Response(200, content=f"garbage {KEY}".encode()),
        ]
    )
    rec = Recorder(lambda request: next(answers))
    caplog.set_level(logging.DEBUG)  # everything, httpx and httpcore included
    local = StaticLocal()
    errors: list[str] = []
    async with client_for(rec) as client:
        provider = OpenAIProvider(config, client)
        assert (await provider.complete(REQ, 2.0))[0].text == "ok"
        for _ in range(2):
            try:
                await provider.complete(REQ, 2.0)
            except ProviderError as exc:
                errors.append(str(exc) + repr(exc) + getattr(exc, "detail", ""))
        wrapped = FallbackProvider(OpenAIProvider(config, client), local, CircuitBreaker(1, 30), 2000)
        rec.answer = lambda request: httpx.Response(500, json={"error": f"bad {KEY}"})
        assert (await wrapped.complete(REQ, 2.0))[0].text == "local_answer()"
        status = json.dumps(wrapped.status())
    assert rec.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was sent ...
    assert len(errors) == 2
    assert caplog.records, "the test must capture something to be meaningful"
    for text in [caplog.text, *errors, status, repr(provider), *(r.getMessage() for r in caplog.records)]:
        assert KEY not in text  # ... and never shown


async def test_a_key_with_surrounding_whitespace_is_sent_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env saved with CRLF line endings, or a pasted key, carries a \\r or a space."""
    monkeypatch.setenv("MY_LLM_KEY", f" {KEY}\r\n")
    rec = Recorder(ok_json({"choices": [{"text": "x"}]}))
    async with client_for(rec) as client:
        await OpenAIProvider(openai_config(api_key="", api_key_env="MY_LLM_KEY"), client).complete(REQ, 2.0)
    assert rec.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_a_key_no_header_can_carry_is_an_error_that_never_shows_it() -> None:
    rec = Recorder(ok_json({"choices": [{"text": "x"}]}))
    async with client_for(rec) as client:
        with pytest.raises(ProviderError) as raised:
            await OpenAIProvider(openai_config(api_key=f"{KEY}\rtail"), client).complete(REQ, 2.0)
    assert "control characters" in str(raised.value) and KEY not in str(raised.value) and not rec.requests


def test_an_error_message_quoting_the_header_never_shows_the_key() -> None:
    from heedls.server.providers.http import _scrub

    secret = f"{KEY}\r"  # as h11 quotes it: Illegal header value b'Bearer sk-...\\r'
    message = f"LocalProtocolError: Illegal header value {('Bearer ' + secret).encode()!r}"
    assert KEY not in _scrub(message, secret) and KEY not in _scrub(message, "")


async def test_no_key_no_authorization_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEEDLS_API_KEY", raising=False)
    rec = Recorder(ok_json({"choices": [{"text": "x"}]}))
    async with client_for(rec) as client:
        await OpenAIProvider(openai_config(api_key=""), client).complete(REQ, 2.0)
    assert "authorization" not in rec.requests[0].headers


# -- Ollama -----------------------------------------------------------------------------------------


def ollama_config(**kw: Any) -> ProviderConfig:
    return replace(ProviderConfig(name="ollama", endpoint="http://localhost:11434", model="qwen2.5-coder:1.5b"), **kw)


async def test_ollama_generate_request_and_response() -> None:
    answer = {"model": "qwen2.5-coder:1.5b", "response": "return a + b", "done": True, "done_reason": "stop",
              "logprobs": [{"token": "return", "logprob": -0.05}]}
    rec = Recorder(ok_json(answer))
    async with client_for(rec) as client:
        (candidate,) = await OllamaProvider(ollama_config(max_tokens=32, temperature=0.2), client).complete(REQ, 2.0)
    assert rec.paths() == ["/api/generate"]
    body = rec.bodies()[0]
    assert body == {
        "model": "qwen2.5-coder:1.5b",
        "prompt": REQ.prefix,
        "suffix": REQ.suffix,
        "raw": False,
        "stream": False,
        # no `stop`: ours would replace the model's own stop tokens
        "options": {"num_predict": 32, "temperature": 0.2},
    }
    assert candidate.text == "return a + b" and candidate.provider == "ollama"
    assert candidate.logprob == pytest.approx(-0.05)
    assert candidate.confidence == pytest.approx(math.exp(-0.05))


async def test_ollama_model_without_infill_switches_to_raw_template() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("suffix") and not body.get("raw"):
            return httpx.Response(400, json={"error": 'registry.ollama.ai/library/llama3 does not support insert'})
        return httpx.Response(200, json={"response": "return a + b<|fim_pad|>", "done": True})

    rec = Recorder(answer)
    async with client_for(rec) as client:
        provider = OllamaProvider(ollama_config(), client)
        first = await provider.complete(REQ, 2.0)
        second = await provider.complete(REQ, 2.0)
    assert [c.text for c in first + second] == ["return a + b", "return a + b"]
    bodies = rec.bodies()
    assert len(bodies) == 3  # one refused request, then raw from the start
    for body in bodies[1:]:
        assert body["raw"] is True and "suffix" not in body
        assert body["prompt"] == fill_template(ProviderConfig().fim_template, REQ.prefix, REQ.suffix)
        assert body["options"]["stop"] == ["<|fim_prefix|>", "<|fim_suffix|>"]


async def test_ollama_other_400s_are_failures() -> None:
    rec = Recorder(lambda r: httpx.Response(400, json={"error": "model 'nope' not found"}))
    async with client_for(rec) as client:
        with pytest.raises(ProviderError, match="HTTP 400"):
            await OllamaProvider(ollama_config(), client).complete(REQ, 2.0)
    assert len(rec.requests) == 1


async def test_ollama_chat_mode_and_chat_api() -> None:
    rec = Recorder(ok_json({"message": {"role": "assistant", "content": "```py\nreturn a + b\n```"}, "done": True}))
    async with client_for(rec) as client:
        provider = OllamaProvider(ollama_config(mode="chat"), client)
        (candidate,) = await provider.complete(REQ, 2.0)
        answers = await provider.chat([{"role": "user", "content": "hi"}], max_tokens=50, temperature=0.8,
                                      n=3, deadline_s=5.0)
    assert candidate.text == "return a + b" and candidate.source == "chat"
    assert rec.paths() == ["/api/chat"] * 4  # no `n` in Ollama: one request per answer
    assert answers == ["```py\nreturn a + b\n```"] * 3
    body = rec.bodies()[-1]
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["stream"] is False
    assert body["options"] == {"num_predict": 50, "temperature": 0.8}


async def test_ollama_garbage() -> None:
    for payload in ({"done": True}, {"response": None}, {"response": "x", "done": False}):
        async with client_for(ok_json(payload)) as client:
            with pytest.raises(ProviderError):
                await OllamaProvider(ollama_config(), client).complete(REQ, 2.0)


# -- llama.cpp --------------------------------------------------------------------------------------


def llamacpp_config(**kw: Any) -> ProviderConfig:
    return replace(ProviderConfig(name="llamacpp", endpoint="http://127.0.0.1:8080"), **kw)


async def test_llamacpp_infill_request_and_probabilities() -> None:
    answer = {
        "content": "return a + b",
        "stop": True,
        "completion_probabilities": [
            {"id": 1, "token": "return", "logprob": -0.1, "top_logprobs": []},
            {"id": 2, "token": " a", "logprob": -0.3, "top_logprobs": []},
        ],
    }
    rec = Recorder(ok_json(answer))
    async with client_for(rec) as client:
        (candidate,) = await LlamaCppProvider(llamacpp_config(max_tokens=40), client).complete(REQ, 2.0)
    assert rec.paths() == ["/infill"]
    body = rec.bodies()[0]
    assert body["input_prefix"] == REQ.prefix and body["input_suffix"] == REQ.suffix
    assert body["n_predict"] == 40 and body["stream"] is False and body["n_probs"] == 1
    assert candidate.text == "return a + b" and candidate.source == "infill"
    assert candidate.logprob == pytest.approx(-0.4)
    assert candidate.confidence == pytest.approx((math.exp(-0.1) + math.exp(-0.3)) / 2)


async def test_llamacpp_old_probability_format() -> None:
    answer = {"content": "ab", "completion_probabilities": [
        {"content": "a", "probs": [{"tok_str": "a", "prob": 0.5}, {"tok_str": "b", "prob": 0.3}]},
        {"content": "b", "probs": [{"tok_str": "c", "prob": 0.6}, {"tok_str": "b", "prob": 0.25}]},
    ]}
    async with client_for(ok_json(answer)) as client:
        (candidate,) = await LlamaCppProvider(llamacpp_config(), client).complete(REQ, 2.0)
    assert candidate.logprob == pytest.approx(math.log(0.5) + math.log(0.25))


@pytest.mark.parametrize("status", [404, 501])
async def test_llamacpp_without_infill_uses_completion_with_the_template(status: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/infill":
            return httpx.Response(status, json={"error": {"message": "not supported"}})
        return httpx.Response(200, json={"content": "return a + b"})

    rec = Recorder(answer)
    template = "<PRE> {prefix} <SUF>{suffix} <MID>"
    async with client_for(rec) as client:
        provider = LlamaCppProvider(llamacpp_config(fim_template=template), client)
        first = await provider.complete(REQ, 2.0)
        second = await provider.complete(REQ, 2.0)
    assert [c.text for c in first + second] == ["return a + b"] * 2
    assert [c.source for c in first] == ["completion"]
    assert rec.paths() == ["/infill", "/completion", "/completion"]
    body = rec.bodies()[1]
    assert body["prompt"] == fill_template(template, REQ.prefix, REQ.suffix)
    assert body["stop"] == ["<PRE>", "<SUF>"]


async def test_llamacpp_500_is_a_failure_not_a_route_switch() -> None:
    rec = Recorder(lambda r: httpx.Response(500, json={"error": {"message": "slot busy"}}))
    async with client_for(rec) as client:
        provider = LlamaCppProvider(llamacpp_config(), client)
        with pytest.raises(ProviderError):
            await provider.complete(REQ, 2.0)
    assert rec.paths() == ["/infill"] and provider.use_completion is False


async def test_llamacpp_chat_uses_openai_route_then_flattened_completion() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/chat/completions":
            return httpx.Response(200, json={"choices": [{"message": {"content": "patched"}}]})
        return httpx.Response(200, json={"content": "flat"})

    rec = Recorder(answer)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "fix"}]
    async with client_for(rec) as client:
        provider = LlamaCppProvider(llamacpp_config(), client)
        assert await provider.chat(messages, max_tokens=10, temperature=0, n=2, deadline_s=5) == ["patched"] * 2
        rec.answer = lambda r: (httpx.Response(404, json={}) if r.url.path.startswith("/v1")
                                else httpx.Response(200, json={"content": "flat"}))
        assert await provider.chat(messages, max_tokens=10, temperature=0, n=1, deadline_s=5) == ["flat"]
    assert rec.paths()[-2:] == ["/v1/chat/completions", "/completion"]
    prompt = rec.bodies()[-1]["prompt"]
    assert prompt.startswith("System: be brief") and prompt.endswith("Assistant:")


# -- fallback over MockTransport ----------------------------------------------------------------------


async def test_fallback_serves_local_on_garbage_and_counts_a_failure() -> None:
    local = StaticLocal()
    async with client_for(lambda r: httpx.Response(200, content=b"\x00garbage")) as client:
        breaker = CircuitBreaker(3, 30)
        provider = FallbackProvider(OpenAIProvider(openai_config(), client), local, breaker, 1500)
        candidates = await provider.complete(REQ, 1.5)
    assert [c.text for c in candidates] == ["local_answer()"]
    assert breaker.consecutive_failures == 1 and local.calls == 1
    assert provider.status()["last_error"].endswith("response is not JSON (8 bytes)")


async def test_rate_limit_with_retry_after_opens_the_breaker_at_once() -> None:
    rec = Recorder(lambda r: httpx.Response(429, headers={"Retry-After": "90"}, json={"error": "slow down"}))
    async with client_for(rec) as client:
        breaker = CircuitBreaker(3, 30)
        provider = FallbackProvider(OpenAIProvider(openai_config(), client), StaticLocal(), breaker, 1500)
        assert (await provider.complete(REQ, 1.5))[0].provider == "local"
        assert (await provider.complete(REQ, 1.5))[0].provider == "local"
    assert len(rec.requests) == 1  # no second request while the server asked us to wait
    assert breaker.state == "open" and breaker.cooldown_s == 90


def test_retry_after_parsing() -> None:
    assert http_mod.parse_retry_after("12") == 12
    assert http_mod.parse_retry_after(" 1.5 ") == 1.5
    assert http_mod.parse_retry_after("-3") == 0
    assert http_mod.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
    assert http_mod.parse_retry_after("soon") is None
    assert http_mod.parse_retry_after(None) is None
    assert http_mod.parse_retry_after("nan") is None


async def test_fallback_turns_unexpected_exceptions_into_local_answers() -> None:
    class Broken:
        name = "broken"

        async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
            raise KeyError("choices")

        async def aclose(self) -> None:
            return None

    provider = FallbackProvider(Broken(), StaticLocal(), CircuitBreaker(3, 30), 1500)
    assert [c.provider for c in await provider.complete(REQ, 1.5)] == ["local"]
    assert provider.status()["last_error"] == "unexpected KeyError"


async def test_fallback_gives_the_primary_the_deadline_minus_a_reserve() -> None:
    seen: list[float] = []

    class Primary:
        name = "p"

        async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
            seen.append(deadline_s)
            return [Candidate(text="remote", provider="p")]

        async def aclose(self) -> None:
            return None

    provider = FallbackProvider(Primary(), StaticLocal(), CircuitBreaker(3, 30), deadline_ms=1000)
    await provider.complete(REQ, 5.0)  # the configured 1 s wins over the caller's 5 s
    await provider.complete(REQ, 0.4)  # the caller's 0.4 s wins over the configured 1 s
    assert seen[0] == pytest.approx(1.0 - 0.2)
    assert seen[1] == pytest.approx(0.4 - 0.08)


async def test_cancellation_propagates_and_is_not_a_failure() -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(60)
        return httpx.Response(200, json={})

    local = StaticLocal()
    async with make_client(httpx.MockTransport(hang)) as client:
        breaker = CircuitBreaker(1, 30)
        provider = FallbackProvider(OpenAIProvider(openai_config(), client), local, breaker, 10_000)
        task = asyncio.create_task(provider.complete(REQ, 10.0))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert breaker.state == "closed" and breaker.consecutive_failures == 0 and local.calls == 0


async def test_fallback_chat_returns_empty_when_primary_fails_and_local_cannot_chat() -> None:
    async with client_for(lambda r: httpx.Response(503)) as client:
        provider = FallbackProvider(OpenAIProvider(openai_config(), client), StaticLocal(), CircuitBreaker(3, 30), 1500)
        answers = await provider.chat([{"role": "user", "content": "x"}], max_tokens=5, temperature=0, n=1,
                                      deadline_s=2.0)
    assert answers == [] and provider.breaker.consecutive_failures == 1


# -- registry -----------------------------------------------------------------------------------------


def test_registry_local_is_returned_as_is() -> None:
    local = StaticLocal()
    assert build_provider(ProviderConfig(), local) is local


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        (ProviderConfig(name="openai"), "endpoint is not set"),
        (ProviderConfig(name="llamacpp", endpoint="localhost:8080"), "not an http(s) URL"),
        (ProviderConfig(name="ollama", endpoint="ftp://host/"), "not an http(s) URL"),
        (ProviderConfig(name="ollama", endpoint="http://localhost:11434"), "model is not set"),
        (ProviderConfig(name="openai", endpoint="http://host:notaport/v1"), "not an http(s) URL"),
    ],
)
def test_registry_bad_config_warns_and_serves_local(
    config: ProviderConfig, needle: str, caplog: pytest.LogCaptureFixture
) -> None:
    local = StaticLocal()
    warnings: list[str] = []
    with caplog.at_level(logging.WARNING, logger="heedls"):
        provider = build_provider(config, local, on_warning=warnings.append)
    assert provider is local
    assert len(warnings) == 1 and needle in warnings[0] and "local" in warnings[0]
    # said once: the callback's owner logs it (the server) or prints it (heedls complete)
    assert needle not in caplog.text
    with caplog.at_level(logging.WARNING, logger="heedls"):
        assert build_provider(config, local) is local  # nobody to tell: logged
    assert needle in caplog.text


@pytest.mark.parametrize(
    ("name", "cls"), [("openai", OpenAIProvider), ("ollama", OllamaProvider), ("llamacpp", LlamaCppProvider)]
)
async def test_registry_wraps_http_providers_in_a_fallback(name: str, cls: type) -> None:
    config = ProviderConfig(name=name, endpoint="http://127.0.0.1:9", model="m", breaker_failures=5,
                            breaker_cooldown_s=12, deadline_ms=800)
    local = StaticLocal()
    async with client_for(lambda r: httpx.Response(500)) as client:
        provider = build_provider(config, local, client)
        assert isinstance(provider, FallbackProvider)
        assert isinstance(provider.primary, cls) and provider.fallback is local
        assert provider.primary.client is client
        assert provider.breaker.failure_threshold == 5 and provider.breaker.base_cooldown_s == 12
        assert provider.deadline_s == pytest.approx(0.8)
        assert provider.name == name
        await provider.aclose()
        assert not client.is_closed  # the injected client belongs to the caller


def test_registry_warns_about_a_key_sent_in_clear_text_to_a_remote_host() -> None:
    warnings: list[str] = []
    build_provider(ProviderConfig(name="openai", endpoint="http://gpu-box.lan:8000/v1", api_key=KEY),
                   StaticLocal(), on_warning=warnings.append)
    assert len(warnings) == 1 and "unencrypted" in warnings[0] and KEY not in warnings[0]
    warnings.clear()
    build_provider(ProviderConfig(name="openai", endpoint="http://127.0.0.1:8000/v1", api_key=KEY),
                   StaticLocal(), on_warning=warnings.append)
    assert warnings == []


# -- the shared client --------------------------------------------------------------------------------


async def test_shared_client_is_one_per_loop_and_closes() -> None:
    first = shared_client()
    assert shared_client() is first
    assert first.timeout.connect is not None
    await aclose_shared_client()
    assert first.is_closed
    second = shared_client()
    assert second is not first and not second.is_closed
    await aclose_shared_client()
    await aclose_shared_client()  # idempotent


async def test_providers_use_the_shared_client_when_none_is_injected() -> None:
    provider = OpenAIProvider(openai_config())
    try:
        assert provider.client is shared_client()
    finally:
        await aclose_shared_client()


async def test_post_json_with_no_time_left_fails_fast() -> None:
    rec = Recorder(ok_json({}))
    async with client_for(rec) as client:
        with pytest.raises(ProviderError):
            await post_json(client, "http://x.test/", {}, deadline_s=0)
    assert rec.requests == []


# -- answers that are not a completion -----------------------------------------------------------------

FILE_REQ = CompletionRequest(prefix="import os\n\n\ndef walk(root):\n    for name in os.listdir(", suffix="):\n        print(name)\n",
                             path="/ws/walker.py")


async def test_bytes_that_are_not_utf8_are_a_failure_not_replacement_characters() -> None:
    rec = Recorder(lambda request: httpx.Response(200, content=b'{"choices": [{"text": "it\xffems"}]}'))
    async with client_for(rec) as client:
        with pytest.raises(ProviderError, match="not UTF-8"):
            await OpenAIProvider(openai_config(), client).complete(FILE_REQ, 2.0)


@pytest.mark.parametrize(("answer", "expected"), [
    ("```python\nroot\n```", "root"),  # small FIM models fence their code too
    (FILE_REQ.prefix + "root", "root"),  # a server that returns the prompt with the completion
    ("import os\n\n\ndef walk(root):\n    pass\n", None),  # the file started over: nothing usable
])
async def test_a_fim_answer_is_cleaned_of_fences_and_echoes(answer: str, expected: str | None) -> None:
    rec = Recorder(ok_json({"choices": [{"text": answer}]}))
    async with client_for(rec) as client:
        candidates = await OpenAIProvider(openai_config(), client).complete(FILE_REQ, 2.0)
    assert [c.text for c in candidates] == ([expected] if expected else [])


@pytest.mark.parametrize(("answer", "expected"), [
    (FILE_REQ.prefix + "root" + FILE_REQ.suffix, "root" + FILE_REQ.suffix),  # the whole file, gap filled
    ("File walker.py:\n" + FILE_REQ.prefix, None),  # the question echoed back
])
async def test_a_chat_answer_that_is_the_file_again_is_never_the_start_of_the_file(answer: str,
                                                                                  expected: str | None) -> None:
    rec = Recorder(ok_json({"choices": [{"message": {"content": answer}}]}))
    async with client_for(rec) as client:
        candidates = await OpenAIProvider(openai_config(mode="chat"), client).complete(FILE_REQ, 2.0)
    assert [c.text for c in candidates] == ([expected] if expected else [])


async def test_an_outage_and_a_refused_key_are_told_to_the_user_not_only_logged() -> None:
    told: list[str] = []
    rec = Recorder(lambda request: httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}}))
    async with client_for(rec) as client:
        wrapped = FallbackProvider(OpenAIProvider(openai_config(), client), StaticLocal(), CircuitBreaker(1, 30), 2000,
                                   on_warning=told.append)
        assert (await wrapped.complete(REQ, 2.0))[0].text == "local_answer()"
    assert len(told) == 1 and "HTTP 401 (the endpoint refused the API key)" in told[0] and "serving" in told[0]
    assert KEY not in told[0]


async def test_llamacpp_one_404_during_an_outage_does_not_switch_to_completion_for_good() -> None:
    """/infill and /completion both 404 (a proxy in front of a restarting server): an outage, not a
    server without /infill; once it is back, /infill (with the model's own FIM tokens) is used."""
    down = True

    def answer(request: httpx.Request) -> httpx.Response:
        if down:
            return httpx.Response(404, text="no upstream")
        return httpx.Response(200, json={"content": "return a + b"})

    rec = Recorder(answer)
    async with client_for(rec) as client:
        provider = LlamaCppProvider(llamacpp_config(), client)
        with pytest.raises(ProviderError):
            await provider.complete(REQ, 2.0)
        down = False
        [candidate] = await provider.complete(REQ, 2.0)
    assert candidate.source == "infill" and rec.paths() == ["/infill", "/completion", "/infill"]


async def test_llamacpp_asks_for_infill_again_after_a_while() -> None:
    infill = False
    rec = Recorder(lambda r: httpx.Response(200, json={"content": "x"}) if infill or r.url.path == "/completion"
                   else httpx.Response(404, text="not found"))
    async with client_for(rec) as client:
        provider = LlamaCppProvider(llamacpp_config(), client)
        [first] = await provider.complete(REQ, 2.0)
        assert first.source == "completion" and provider.use_completion
        infill = True
        provider.completion_until = 0.0  # INFILL_RETRY_S have passed
        [candidate] = await provider.complete(REQ, 2.0)
    assert candidate.source == "infill"
