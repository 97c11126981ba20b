"""A stand-in for the `local` provider in fallback tests: answers instantly, counts its calls."""

from __future__ import annotations

from heedls.server.providers.base import Candidate, CompletionRequest


class StaticLocal:
    """The fallback in provider tests: answers instantly with a recognisable candidate."""

    name = "local"

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        self.calls += 1
        return [Candidate(text="local_answer()", provider="local")]

    async def aclose(self) -> None:
        return None
