"""Plain data shared by every analyzer and by the server/CLI that present their results.

Positions are 0-based line and character (UTF-16 code units are the server's concern; analyzers
count Python str characters), as in LSP, so the JSON of `heedls check` matches the editor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

Severity = Literal["error", "warning", "information", "hint"]
Applicability = Literal["safe", "unsafe", "display-only", "validated", "hint"]


@dataclass(frozen=True, order=True)
class Position:
    line: int
    character: int


@dataclass(frozen=True)
class Range:
    start: Position
    end: Position

    @staticmethod
    def of(line: int, character: int, end_line: int | None = None, end_character: int | None = None) -> Range:
        return Range(
            Position(line, character),
            Position(line if end_line is None else end_line, character if end_character is None else end_character),
        )


@dataclass(frozen=True)
class TextEdit:
    path: str
    range: Range
    new_text: str


@dataclass(frozen=True)
class Fix:
    """A change that addresses a diagnostic.

    `applicability` follows ruff ("safe" / "unsafe" / "display-only"), plus "validated" for fixes
    heedls proved by running the tests, and "hint" for unvalidated suggestions that must never be
    presented as fixes.
    """

    title: str
    edits: tuple[TextEdit, ...]
    applicability: Applicability = "safe"
    source: str = ""  # "ruff", "syntax", "repair", "llm", ...
    patch: str = ""  # unified diff of the same change, for CLI/JSON output


@dataclass(frozen=True)
class RelatedLocation:
    path: str
    range: Range
    message: str


@dataclass
class Diagnostic:
    path: str  # absolute path
    range: Range
    severity: Severity
    source: str  # "syntax" | "ruff" | "pytest" | "repair"
    code: str | None
    message: str
    explanation: str | None = None
    fixes: list[Fix] = field(default_factory=list)
    related: list[RelatedLocation] = field(default_factory=list)
    url: str | None = None
    # Higher = more likely the cause; used to order diagnostics per file ("most likely cause first").
    rank: float = 0.0
    # Facts the explanation was built from (exception type, values, test id, ...).
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self, relative_to: str | None = None) -> dict[str, Any]:
        path = self.path if relative_to is None else _relative(self.path, relative_to)
        start, end = self.range.start, self.range.end
        return {
            "path": path,
            # written out: dataclasses.asdict deep-copies, half the time of a 44,000-finding report
            "range": {"start": {"line": start.line, "character": start.character},
                      "end": {"line": end.line, "character": end.character}},
            "severity": self.severity,
            "source": self.source,
            "code": self.code,
            "message": self.message,
            "explanation": self.explanation,
            "fixes": [
                {"title": f.title, "applicability": f.applicability, "source": f.source, "patch": f.patch}
                for f in self.fixes
            ],
        }


@lru_cache(maxsize=1024)
def _relative(path: str, base: str) -> str:
    """`path` relative to `base` (as is on another drive); cached: a report repeats its few paths."""
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return path
