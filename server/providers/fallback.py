"""A remote provider with the local one behind it: the editor never sees the remote fail.

The primary gets the request's deadline minus a reserve kept for the local fallback. A timeout,
refused connection, HTTP error status, non-JSON or wrongly-shaped answer (anything but
cancellation) counts as one failure for the circuit breaker and the local provider's candidates
are returned instead, still inside the overall deadline. While the breaker is open the primary is
not called at all. State changes are logged once each (never per request, never with the key).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from heedls.server.providers.base import Candidate, CompletionRequest, Provider, ProviderError
from heedls.server.providers.breaker import CircuitBreaker, State
from heedls.server.providers.http import HTTPStatusProviderError

log = logging.getLogger("heedls.providers")


def tell(on_warning: Callable[[str], None] | None, message: str) -> None:
    """A warning for the user, said once: through `on_warning` when there is one (the server logs
    it and tells the editor; `heedls complete` prints it), else logged here."""
    if on_warning is not None:
        try:
            on_warning(message)
            return
        except Exception:  # noqa: BLE001 - telling the user must never break serving
            log.debug("warning callback failed", exc_info=True)
    log.warning("%s", message)

# The local provider's p95 is ~50 ms on 2 cores; keep it that plus headroom, at most a quarter of
# a short deadline.
MIN_RESERVE_S = 0.05
MAX_RESERVE_S = 0.25
RESERVE_SHARE = 0.2


@runtime_checkable
class ChatProvider(Protocol):
    """A provider that can also hold a conversation (repair candidates, LLM explanations)."""

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        n: int = 1,
        deadline_s: float,
    ) -> list[str]: ...


# Statuses whose `Retry-After` says how long to stay away: 429 (rate limit) and 503 (overloaded,
# loading a model, in maintenance: what Azure OpenAI, vLLM, llama.cpp's server and proxies send).
RETRY_AFTER_STATUSES = frozenset({429, 503})

# What an error status most likely means for the user (the server's own text is logged at DEBUG only).
_HINTS = {401: "the endpoint refused the API key", 403: "the API key may not use this endpoint or model",
          404: "no such model or path at the endpoint"}


class FallbackProvider:
    def __init__(
        self,
        primary: Provider,
        fallback: Provider,
        breaker: CircuitBreaker,
        deadline_ms: int,
        *,
        reserve_s: float | None = None,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.primary = primary
        self.on_warning = on_warning  # the server's window/logMessage: an outage is the user's to know
        self.fallback = fallback
        self.breaker = breaker
        self.deadline_s = deadline_ms / 1000 if deadline_ms > 0 else 0.0
        self.reserve_s = reserve_s
        self.name = primary.name
        self.last_error: str | None = None
        self.counts = {"primary": 0, "fallback": 0, "failures": 0}
        breaker.on_change = self._on_state_change

    # -- the Provider protocol -------------------------------------------------------------------
    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        start = time.monotonic()
        total = self._total(deadline_s)
        reserve = self._reserve(total)
        primary_budget = total - reserve
        if primary_budget > 0 and self.breaker.allow():
            try:
                async with asyncio.timeout(primary_budget):
                    candidates = await self.primary.complete(request, primary_budget)
            except asyncio.CancelledError:
                # Superseded by a newer keystroke: says nothing about the endpoint's health.
                self.breaker.abandon()
                raise
            except Exception as exc:  # noqa: BLE001 - every backend failure means "use local"
                self._failed(exc, primary_budget)
            else:
                self.breaker.record_success()
                self.counts["primary"] += 1
                return candidates
        return await self._fallback(request, total - (time.monotonic() - start))

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float,
        n: int = 1,
        deadline_s: float,
    ) -> list[str]:
        """The primary's chat when it is healthy, else the fallback's if it has one, else []."""
        start = time.monotonic()
        if isinstance(self.primary, ChatProvider) and self.breaker.allow():
            try:
                async with asyncio.timeout(deadline_s):
                    answers = await self.primary.chat(
                        messages, max_tokens=max_tokens, temperature=temperature, n=n, deadline_s=deadline_s
                    )
            except asyncio.CancelledError:
                self.breaker.abandon()
                raise
            except Exception as exc:  # noqa: BLE001
                self._failed(exc, deadline_s)
            else:
                self.breaker.record_success()
                return answers
        left = deadline_s - (time.monotonic() - start)
        if isinstance(self.fallback, ChatProvider) and left > 0:
            try:
                async with asyncio.timeout(left):
                    return await self.fallback.chat(
                        messages, max_tokens=max_tokens, temperature=temperature, n=n, deadline_s=left
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.debug("fallback chat failed", exc_info=True)
        return []

    async def aclose(self) -> None:
        # Only the primary is ours: the local provider is shared with the rest of the server and
        # survives a configuration change that rebuilds this wrapper.
        await self.primary.aclose()

    def status(self) -> dict[str, Any]:
        """For `heedls/status` and `:checkhealth`: no key, no code."""
        return {
            "name": self.name,
            "endpoint": getattr(self.primary, "where", None),
            "state": self.breaker.state,
            "retry_in_s": round(self.breaker.retry_in(), 1),
            "consecutive_failures": self.breaker.consecutive_failures,
            "last_error": self.last_error,
            **self.counts,
        }

    # -- internals -------------------------------------------------------------------------------
    def _total(self, deadline_s: float) -> float:
        budgets = [b for b in (deadline_s, self.deadline_s) if b > 0]
        return min(budgets) if budgets else 0.0

    def _reserve(self, total: float) -> float:
        if self.reserve_s is not None:
            return min(self.reserve_s, total)
        return min(MAX_RESERVE_S, max(MIN_RESERVE_S, RESERVE_SHARE * total), total)

    def _failed(self, exc: Exception, budget_s: float) -> None:
        if isinstance(exc, ProviderError):
            reason = str(exc)  # built to be safe to log (see http.post_json)
        elif isinstance(exc, TimeoutError):
            reason = f"no answer within {budget_s * 1000:.0f} ms"
        else:
            # Not ours to trust: the text of an arbitrary exception might quote a response.
            reason = f"unexpected {type(exc).__name__}"
            log.debug("provider %s failed", self.name, exc_info=exc)
        if isinstance(exc, HTTPStatusProviderError) and exc.status in _HINTS:
            reason += f" ({_HINTS[exc.status]})"
        self.last_error = reason
        self.counts["failures"] += 1
        log.debug("provider %s failed: %s", self.name, reason)
        if isinstance(exc, HTTPStatusProviderError) and exc.status in RETRY_AFTER_STATUSES and exc.retry_after_s:
            # Rate-limited or overloaded with an explicit wait: asking again sooner only prolongs it.
            # Bounded by the breaker (at most its 10-minute cap, however long the server asked for).
            self.breaker.trip(exc.retry_after_s)
        else:
            self.breaker.record_failure()

    async def _fallback(self, request: CompletionRequest, left_s: float) -> list[Candidate]:
        self.counts["fallback"] += 1
        # Even when the primary used up the time (it cannot, short of a clock hiccup), give the
        # local provider its reserve rather than nothing: it is fast and a late answer is still
        # better than an error.
        budget = max(left_s, MIN_RESERVE_S)
        try:
            async with asyncio.timeout(budget):
                return await self.fallback.complete(request, budget)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.debug("fallback provider %s failed", self.fallback.name, exc_info=True)
            return []

    def _on_state_change(self, old: State, new: State) -> None:
        where = getattr(self.primary, "where", "")
        label = f"provider {self.name}" + (f" at {where}" if where else "")
        if new == "open":
            self._warn(f"{label} unavailable ({self.last_error or 'failed'}); serving {self.fallback.name} "
                       f"suggestions, retrying in {self.breaker.cooldown_s:.0f} s")
        elif new == "half_open":
            log.info("%s: trying again", label)
        elif old != "closed":
            self._warn(f"{label} is back")

    def _warn(self, message: str) -> None:
        tell(self.on_warning, message)
