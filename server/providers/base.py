"""The provider protocol: given the text around the cursor, return candidate insertions.

Providers never raise for an unavailable backend: the caller wraps them with a deadline and a
fallback (see fallback.py). A provider returns raw text; post-processing happens in the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class CompletionRequest:
    prefix: str  # document text before the cursor (possibly truncated at the front)
    suffix: str  # document text after the cursor (possibly truncated at the end)
    path: str = ""  # absolute path of the document, "" for unsaved buffers
    language: str = "python"
    line: int = 0  # 0-based, as in LSP
    character: int = 0  # 0-based column in code points (an index into the line), not LSP code units
    workspace: Path | None = None
    max_lines: int = 8
    # Full document text, when the caller has it (jedi needs the whole buffer).
    document: str | None = None


@dataclass(frozen=True)
class Candidate:
    text: str
    provider: str
    model: str | None = None
    # Provider's own confidence in [0, 1] (or mean token probability), None when unknown.
    confidence: float | None = None
    logprob: float | None = None
    # Where the candidate came from inside a provider ("jedi", "ngram", "retrieval", ...).
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)


class ProviderError(Exception):
    """A backend failed (connection, HTTP status, garbage). Triggers fallback and the breaker."""


@runtime_checkable
class Provider(Protocol):
    name: str

    async def complete(self, request: CompletionRequest, deadline_s: float) -> list[Candidate]:
        """Return candidates (best first), possibly empty. May raise ProviderError."""
        ...

    async def aclose(self) -> None: ...
