"""Any OpenAI-compatible server: OpenAI itself, vLLM, llama.cpp's server, LM Studio, LocalAI, ...

Two modes (`provider.mode`):
- `fim`: `POST {base}/completions` with the prompt built from `provider.fimTemplate`
  (`{prefix}`/`{suffix}` placeholders, the model family's FIM tokens), or, when the template is
  empty, `prompt=prefix` plus the `suffix` field (OpenAI's instruct models, DeepSeek's FIM beta).
- `chat`: `POST {base}/chat/completions` with a system prompt asking for the insertion only;
  markdown fences and a retyped current line are stripped from the answer.

`{base}` is the endpoint when it already ends in a version segment (`http://host:8000/v1`, as
Continue/Tabby users write it), else endpoint + `/v1`.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from heedls.server.config import ProviderConfig
from heedls.server.providers.base import Candidate, CompletionRequest, ProviderError
from heedls.server.providers.http import (
    HTTPProvider,
    clean_chat_completion,
    clean_fim_completion,
    completion_messages,
    confidence_from_logprobs,
    fill_template,
    require_dict,
    require_text,
    server_label,
    stop_tokens,
)

# The OpenAI API rejects more than four stop sequences.
MAX_STOP = 4


class OpenAIProvider(HTTPProvider):
    name = "openai"

    def __init__(
        self,
        config: ProviderConfig,
        client: httpx.AsyncClient | None = None,
        *,
        logprobs: bool = False,
    ) -> None:
        super().__init__(config, client)
        # Off by default: some OpenAI-compatible servers (and OpenAI's reasoning models) reject
        # the parameter, which would open the breaker for nothing. Parsed whenever present.
        self.logprobs = logprobs
        versioned = re.search(r"/v\d+[a-z0-9]*$", self.endpoint) is not None
        self.base = self.endpoint if versioned else self.endpoint + "/v1"

    # -- inline completion -----------------------------------------------------------------------
    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        if self.config.mode == "chat":
            return await self._complete_chat(request, deadline_s)
        return await self._complete_fim(request, deadline_s)

    def fim_payload(self, request: CompletionRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
            "n": 1,
            "stream": False,
        }
        if self.model:
            payload["model"] = self.model
        template = self.config.fim_template
        stop: list[str] = []
        if template:
            payload["prompt"] = fill_template(template, request.prefix, request.suffix)
            # The template's own markers end the middle (e.g. a model starting the next file).
            stop = stop_tokens(template)
        else:
            payload["prompt"] = request.prefix
            payload["suffix"] = request.suffix
        if request.max_lines <= 1:
            stop = ["\n", *stop]
        if stop:
            payload["stop"] = stop[:MAX_STOP]
        if self.logprobs:
            payload["logprobs"] = 1
        return payload

    async def _complete_fim(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        data = await self.post(self.base + "/completions", self.fim_payload(request), deadline_s)
        where = f"{self.where} completions"
        choices = _choices(data, where, 1)
        model = server_label(data.get("model"))
        out: list[Candidate] = []
        for choice in choices:
            text = clean_fim_completion(require_text(choice.get("text"), where), request, where)
            logprob, confidence = confidence_from_logprobs(_completion_logprobs(choice))
            if text.strip():
                out.append(
                    Candidate(
                        text=text,
                        provider=self.name,
                        model=model or self.model or None,
                        confidence=confidence,
                        logprob=logprob,
                        source="fim",
                        meta={"finish_reason": server_label(choice.get("finish_reason"))},
                    )
                )
        return out

    async def _complete_chat(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        answers = await self._chat(
            completion_messages(request),
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
            n=1,
            deadline_s=deadline_s,
        )
        out: list[Candidate] = []
        for text, logprob, confidence, model in answers:
            text = clean_chat_completion(text, request, f"{self.where} chat/completions")
            if text.strip():
                out.append(
                    Candidate(
                        text=text,
                        provider=self.name,
                        model=model or self.model or None,
                        confidence=confidence,
                        logprob=logprob,
                        source="chat",
                    )
                )
        return out

    # -- chat (repair engine, explanations) ------------------------------------------------------
    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        n: int = 1,
        deadline_s: float,
    ) -> list[str]:
        answers = await self._chat(
            messages, max_tokens=max_tokens, temperature=temperature, n=n, deadline_s=deadline_s
        )
        return [text for text, _, _, _ in answers]

    async def _chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        n: int,
        deadline_s: float,
    ) -> list[tuple[str, float | None, float | None, str | None]]:
        payload: dict[str, Any] = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "n": max(1, n),
            "stream": False,
        }
        if self.model:
            payload["model"] = self.model
        if self.logprobs:
            payload["logprobs"] = True
        data = await self.post(self.base + "/chat/completions", payload, deadline_s)
        where = f"{self.where} chat/completions"
        model = server_label(data.get("model"))
        out: list[tuple[str, float | None, float | None, str | None]] = []
        for choice in _choices(data, where, n):
            message = require_dict(choice.get("message"), where)
            content = message.get("content")
            # `null` content is a refusal or a tool call: no text, but not a broken server.
            text = "" if content is None else require_text(content, where)
            logprob, confidence = confidence_from_logprobs(_chat_logprobs(choice))
            out.append((text, logprob, confidence, model))
        return out


def _choices(data: dict[str, Any], where: str, n: int) -> list[dict[str, Any]]:
    """The first `n` choices (as many as were asked for): a server answering with 100 000 of them
    must not cost seconds of parsing past the deadline and a cache entry of megabytes."""
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ProviderError(f"{where}: response has no choices")
    return [require_dict(c, where) for c in choices[: max(1, n)]]


def _completion_logprobs(choice: dict[str, Any]) -> list[float]:
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("token_logprobs"), list):
        return [v for v in logprobs["token_logprobs"] if isinstance(v, (int, float))]
    return []


def _chat_logprobs(choice: dict[str, Any]) -> list[float]:
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
        return [
            item["logprob"]
            for item in logprobs["content"]
            if isinstance(item, dict) and isinstance(item.get("logprob"), (int, float))
        ]
    return []
