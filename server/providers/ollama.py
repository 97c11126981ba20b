"""Ollama (`ollama serve`, default endpoint http://localhost:11434).

FIM mode uses `POST /api/generate` with `prompt` = prefix and `suffix`: Ollama applies the model's
own infill template (qwen2.5-coder, codellama:code, starcoder2, deepseek-coder ...). A model
without one answers 400 "... does not support insert"; we then switch, for the rest of the
session, to `raw: true` with the prompt built from `provider.fimTemplate`. Chat mode and `chat()`
use `POST /api/chat`.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from heedls.server.config import ProviderConfig
from heedls.server.providers.base import Candidate, CompletionRequest, ProviderError
from heedls.server.providers.http import (
    Budget,
    HTTPProvider,
    HTTPStatusProviderError,
    clean_chat_completion,
    clean_fim_completion,
    completion_messages,
    confidence_from_logprobs,
    fill_template,
    gather_n,
    require_dict,
    require_text,
    stop_tokens,
)

log = logging.getLogger("heedls.providers")


class OllamaProvider(HTTPProvider):
    name = "ollama"

    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, client)
        self.raw_fim = False  # set once the model turns out to have no infill template

    def options(self, request: CompletionRequest | None, stop: list[str]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "num_predict": self.config.max_tokens,
            "temperature": self.config.temperature,
        }
        if request is not None and request.max_lines <= 1:
            stop = ["\n", *stop]
        # Only when we have our own: a `stop` option replaces the model's stop list.
        if stop:
            options["stop"] = stop
        return options

    def generate_payload(self, request: CompletionRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "stream": False}
        if self.raw_fim:
            template = self.config.fim_template or "{prefix}"
            payload["prompt"] = fill_template(template, request.prefix, request.suffix)
            payload["raw"] = True
            stop = stop_tokens(template)
        else:
            payload["prompt"] = request.prefix
            payload["suffix"] = request.suffix
            payload["raw"] = False
            stop = []
        payload["options"] = self.options(request, stop)
        return payload

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        if self.config.mode == "chat":
            return await self._complete_chat(request, deadline_s)
        budget = Budget(deadline_s)
        try:
            data = await self.post("/api/generate", self.generate_payload(request), deadline_s)
        except HTTPStatusProviderError as exc:
            if self.raw_fim or exc.status != 400 or "insert" not in exc.detail.lower():
                raise
            log.info("%s: model %s has no infill template; using provider.fimTemplate", self.where, self.model)
            self.raw_fim = True
            data = await self.post("/api/generate", self.generate_payload(request), budget.left())
        where = f"{self.where} /api/generate"
        text = clean_fim_completion(require_text(data.get("response"), where), request, where)
        if data.get("done") is False:
            raise ProviderError(f"{where}: incomplete response")
        if not text.strip():
            return []
        logprob, confidence = confidence_from_logprobs(_logprobs(data))
        return [
            Candidate(
                text=text,
                provider=self.name,
                model=data.get("model") if isinstance(data.get("model"), str) else self.model or None,
                confidence=confidence,
                logprob=logprob,
                source="raw-fim" if self.raw_fim else "fim",
                meta={"done_reason": data.get("done_reason")},
            )
        ]

    async def _complete_chat(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        data = await self._chat_once(
            completion_messages(request), self.options(request, []), deadline_s
        )
        where = f"{self.where} /api/chat"
        text = clean_chat_completion(_message_text(data, where), request, where)
        if not text.strip():
            return []
        logprob, confidence = confidence_from_logprobs(_logprobs(data))
        return [
            Candidate(
                text=text,
                provider=self.name,
                model=self.model or None,
                confidence=confidence,
                logprob=logprob,
                source="chat",
            )
        ]

    async def _chat_once(
        self, messages: list[dict[str, str]], options: dict[str, Any], deadline_s: float
    ) -> dict[str, Any]:
        payload = {"model": self.model, "messages": messages, "stream": False, "options": options}
        return await self.post("/api/chat", payload, deadline_s)

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        n: int = 1,
        deadline_s: float,
    ) -> list[str]:
        options = {"num_predict": max_tokens, "temperature": temperature}
        where = f"{self.where} /api/chat"

        async def one() -> str:
            return _message_text(await self._chat_once(messages, options, deadline_s), where)

        # /api/chat has no `n`: ask n times concurrently (the server queues or batches them).
        return await gather_n(n, one, where)


def _message_text(data: dict[str, Any], where: str) -> str:
    message = require_dict(data.get("message"), where)
    content = message.get("content")
    return "" if content is None else require_text(content, where)


def _logprobs(data: dict[str, Any]) -> list[float]:
    # Ollama >= 0.12 returns [{"token", "logprob", ...}] when asked with "logprobs": true.
    items = data.get("logprobs")
    if not isinstance(items, list):
        return []
    return [i["logprob"] for i in items if isinstance(i, dict) and isinstance(i.get("logprob"), (int, float))]
