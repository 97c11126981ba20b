"""llama.cpp's `llama-server` (default endpoint http://localhost:8080).

FIM mode uses `POST /infill` (`input_prefix`, `input_suffix`, `n_predict`): the server inserts the
model's own FIM tokens. Servers too old for /infill (404) or a model without FIM tokens (501)
make us switch, for the rest of the session, to `POST /completion` with the prompt built from
`provider.fimTemplate`. Chat mode and `chat()` use the server's OpenAI-compatible
`/v1/chat/completions`, or `/completion` with a flattened prompt when that route is missing.
`n_probs: 1` asks for token probabilities, which become the candidate's confidence.
"""

from __future__ import annotations

import logging
import math
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

# 404: route unknown (old server); 501: "infill is not supported by this model".
_NO_ROUTE = {404, 405, 501}
INFILL_RETRY_S = 600.0  # how long /completion stands in for a missing /infill before /infill is asked again


class LlamaCppProvider(HTTPProvider):
    name = "llamacpp"

    def __init__(self, config: ProviderConfig, client: httpx.AsyncClient | None = None) -> None:
        super().__init__(config, client)
        # /infill unavailable (404/501) while /completion answers: build the FIM prompt ourselves,
        # until this time (a server restarted with another model may have /infill again, and one
        # 404 during an outage must not make heedls use its template for the rest of the session).
        self.completion_until = 0.0
        self.no_chat_route = False  # /v1/chat/completions unavailable: flatten chats

    @property
    def use_completion(self) -> bool:
        return time.monotonic() < self.completion_until

    def _sampling(self, request: CompletionRequest | None, stop: list[str]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "n_predict": self.config.max_tokens,
            "temperature": self.config.temperature,
            "stream": False,
            "cache_prompt": True,  # the prefix barely changes between keystrokes
            "n_probs": 1,
        }
        if request is not None and request.max_lines <= 1:
            stop = ["\n", *stop]
        if stop:
            payload["stop"] = stop
        return payload

    def infill_payload(self, request: CompletionRequest) -> dict[str, Any]:
        payload = {"input_prefix": request.prefix, "input_suffix": request.suffix}
        payload.update(self._sampling(request, []))
        return payload

    def completion_payload(self, request: CompletionRequest) -> dict[str, Any]:
        template = self.config.fim_template or "{prefix}"
        stop = stop_tokens(template)
        payload: dict[str, Any] = {"prompt": fill_template(template, request.prefix, request.suffix)}
        payload.update(self._sampling(request, stop))
        return payload

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        if self.config.mode == "chat":
            return await self._complete_chat(request, deadline_s)
        budget = Budget(deadline_s)
        source = "completion"
        switched = False
        if not self.use_completion:
            try:
                data = await self.post("/infill", self.infill_payload(request), deadline_s)
                source = "infill"
            except HTTPStatusProviderError as exc:
                if exc.status not in _NO_ROUTE:
                    raise
                switched = True
        if source == "completion":
            data = await self.post("/completion", self.completion_payload(request), budget.left())
            if switched:  # /completion works where /infill is missing: not an outage
                log.info("%s: /infill unavailable; using /completion for %.0f s", self.where, INFILL_RETRY_S)
                self.completion_until = time.monotonic() + INFILL_RETRY_S
        where = f"{self.where} /{source}"
        text = clean_fim_completion(require_text(data.get("content"), where), request, where)
        if not text.strip():
            return []
        logprob, confidence = confidence_from_logprobs(_token_logprobs(data))
        model = server_label(data.get("model"))
        return [
            Candidate(
                text=text,
                provider=self.name,
                model=model or self.model or None,
                confidence=confidence,
                logprob=logprob,
                source=source,
                meta={"stop_type": server_label(data.get("stop_type"))},
            )
        ]

    async def _complete_chat(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        texts = await self.chat(
            completion_messages(request),
            max_tokens=self.config.max_tokens,
            temperature=self.config.temperature,
            n=1,
            deadline_s=deadline_s,
        )
        out = []
        for text in texts:
            text = clean_chat_completion(text, request, f"{self.where} chat")
            if text.strip():
                out.append(Candidate(text=text, provider=self.name, model=self.model or None, source="chat"))
        return out

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        n: int = 1,
        deadline_s: float,
    ) -> list[str]:
        budget = Budget(deadline_s)
        where = f"{self.where} chat"

        async def one() -> str:
            if not self.no_chat_route:
                payload: dict[str, Any] = {
                    "messages": messages,
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                    "stream": False,
                }
                if self.model:
                    payload["model"] = self.model
                try:
                    data = await self.post("/v1/chat/completions", payload, budget.left())
                except HTTPStatusProviderError as exc:
                    if exc.status not in _NO_ROUTE:
                        raise
                    self.no_chat_route = True
                else:
                    choices = data.get("choices")
                    if not isinstance(choices, list) or not choices:
                        raise ProviderError(f"{where}: response has no choices")
                    message = require_dict(require_dict(choices[0], where).get("message"), where)
                    content = message.get("content")
                    return "" if content is None else require_text(content, where)
            prompt = _flatten(messages)
            data = await self.post(
                "/completion",
                {"prompt": prompt, "n_predict": max_tokens, "temperature": temperature, "stream": False},
                budget.left(),
            )
            return require_text(data.get("content"), where)

        # llama-server allows one choice per request: n requests run concurrently in its slots.
        return await gather_n(n, one, where)


def _flatten(messages: list[dict[str, str]]) -> str:
    parts = [f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


def _token_logprobs(data: dict[str, Any]) -> list[float]:
    """Token log-probabilities from `completion_probabilities`, in either server generation's shape:
    new: [{"token", "logprob", "top_logprobs"}]; old: [{"content", "probs": [{"tok_str", "prob"}]}]."""
    items = data.get("completion_probabilities")
    if not isinstance(items, list):
        return []
    out: list[float] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        logprob = item.get("logprob")
        if isinstance(logprob, (int, float)) and not isinstance(logprob, bool):
            out.append(float(logprob))  # held to a finite value <= 0 by confidence_from_logprobs
            continue
        probs = item.get("probs")
        if isinstance(probs, list) and probs and isinstance(probs[0], dict):
            chosen = next(
                (p for p in probs if isinstance(p, dict) and p.get("tok_str") == item.get("content")),
                probs[0],
            )
            prob = chosen.get("prob")
            if isinstance(prob, (int, float)) and not isinstance(prob, bool) and 0 < prob < math.inf:
                out.append(math.log(min(1.0, prob)))
    return out
