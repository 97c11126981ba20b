"""Ollama (`ollama serve`, default endpoint http://localhost:11434).

FIM mode uses `POST /api/generate` with `prompt` = prefix and `suffix`: Ollama applies the model's
own infill template (qwen2.5-coder, codellama:code, starcoder2, deepseek-coder ...). A model
without one answers 400 `{"error": "<model> does not support insert"}` (server/images.go
CheckCapabilities, since Ollama 0.2.6: the model's full name, "does not support", then the missing
capabilities one a line); on exactly that answer, and once the same request in `raw: true` with the
prompt built from `provider.fimTemplate` has worked, we stay in raw mode for RAW_FIM_RETRY_S and
then ask with `suffix` again (the model may have been re-created with a template). Any other 400
that happens to mention "insert" is an ordinary failure. Chat mode and `chat()` use `POST /api/chat`.
"""

from __future__ import annotations

import logging
import re
import time
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
    server_label,
    stop_tokens,
)

log = logging.getLogger("heedls.providers")

RAW_FIM_RETRY_S = 600.0  # how long raw mode stands in for a missing infill template before asking again

# Ollama's whole error text for a model without an infill template: "<full model name> does not
# support insert", other missing capabilities joined to it one a line ("completion\ninsert").
_NO_INSERT = re.compile(r"\S+ does not support (?:[a-z][a-z ]*\n)*insert(?:\n[a-z][a-z ]*)*")


def says_no_insert(status: int, detail: str) -> bool:
    """Is this Ollama's answer to `suffix` for a model without an infill template? Exactly that
    answer: not any 400 whose text mentions "insert" (an echo of the prompt, a proxy's page)."""
    return status == 400 and _NO_INSERT.fullmatch(detail.strip()) is not None


class OllamaProvider(HTTPProvider):
    name = "ollama"

    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, client)
        # Until this time (time.monotonic()), the model is taken to have no infill template and the
        # prompt is built from provider.fimTemplate (`raw`). Not for good: the model may be re-created
        # (`ollama create`, a new pull) with one, and a confused server must not decide it for the session.
        self.raw_until = 0.0
        self._was_raw = False  # raw mode was in use: say so when the model takes `suffix` again

    @property
    def raw_fim(self) -> bool:
        return time.monotonic() < self.raw_until

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

    def generate_payload(self, request: CompletionRequest, *, raw: bool | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "stream": False}
        if self.raw_fim if raw is None else raw:
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
        raw = self.raw_fim
        try:
            data = await self.post("/api/generate", self.generate_payload(request, raw=raw), deadline_s)
        except HTTPStatusProviderError as exc:
            if raw or not says_no_insert(exc.status, exc.detail):
                raise
            raw = True
            data = await self.post("/api/generate", self.generate_payload(request, raw=True), budget.left())
            # Only now that the raw request worked: a server that is failing anyway switches nothing.
            log.info("%s: model %s has no infill template (Ollama: does not support insert); using "
                     "provider.fimTemplate for %.0f s, then asking with suffix again",
                     self.where, self.model, RAW_FIM_RETRY_S)
            self.raw_until = time.monotonic() + RAW_FIM_RETRY_S
            self._was_raw = True
        else:
            if not raw and self._was_raw:
                log.info("%s: model %s takes suffix again; using its infill template", self.where, self.model)
                self._was_raw = False
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
                model=server_label(data.get("model")) or self.model or None,
                confidence=confidence,
                logprob=logprob,
                source="raw-fim" if raw else "fim",
                meta={"done_reason": server_label(data.get("done_reason"))},
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
    return [i["logprob"] for i in items if isinstance(i, dict) and "logprob" in i]  # numbers: confidence_from_logprobs
