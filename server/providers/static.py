"""A provider that answers instantly with fixed text.

Used by the latency benchmark (to measure the server's own overhead) and by end-to-end tests
(`heedls serve --stub-provider TEXT`). `{line}` in the text is replaced by the cursor line number,
so consecutive requests are distinguishable, and `{character}` by its column (in code points), so
that a test sees where the server put the cursor.
"""

from __future__ import annotations

from heedls.server.providers.base import Candidate, CompletionRequest


class StaticProvider:
    name = "static"

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls = 0

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        self.calls += 1
        text = self.text.replace("{line}", str(request.line)).replace("{character}", str(request.character))
        return [Candidate(text, provider=self.name, confidence=1.0)]

    async def aclose(self) -> None:
        return None
