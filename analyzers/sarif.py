"""SARIF 2.1.0 for code scanning (GitHub, GitLab, Azure DevOps all read it).

One run, tool `heedls`; rule ids are `<source>/<code>` (`ruff/F401`, `syntax/SyntaxError`,
`pytest/AssertionError`) so findings of different analyzers never collide. Columns are counted in
Unicode code points (`columnKind`), which is how the analyzers count them; SARIF lines and columns
are 1-based and the end column is exclusive. Paths are relative to `%SRCROOT%` (the directory the
check ran from) so the file is portable between checkouts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from heedls.analyzers.model import Diagnostic, Fix, Range

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "information": "note", "hint": "note"}


def _rule_id(diagnostic: Diagnostic) -> str:
    return f"{diagnostic.source}/{diagnostic.code or 'unknown'}"


def _artifact(path: str, base: Path) -> dict[str, Any]:
    return dict(_artifact_of(path, base))


@lru_cache(maxsize=1024)
def _artifact_of(path: str, base: Path) -> dict[str, Any]:
    """Cached: a report names its few files again with each of their findings (tens of thousands)."""
    absolute = Path(path).resolve()
    try:
        relative = absolute.relative_to(base)
    except ValueError:
        return {"uri": absolute.as_uri()}
    return {"uri": quote(relative.as_posix()), "uriBaseId": "SRCROOT"}


def _region(rng: Range) -> dict[str, int]:
    return {
        "startLine": rng.start.line + 1,
        "startColumn": rng.start.character + 1,
        "endLine": max(rng.end.line, rng.start.line) + 1,
        "endColumn": rng.end.character + 1,
    }


def _fix(fix: Fix, base: Path) -> dict[str, Any]:
    by_path: dict[str, list[dict[str, Any]]] = {}
    for edit in fix.edits:
        by_path.setdefault(edit.path, []).append(
            {"deletedRegion": _region(edit.range), "insertedContent": {"text": edit.new_text}}
        )
    return {
        "description": {"text": f"{fix.title} [{fix.applicability}]"},
        "artifactChanges": [
            {"artifactLocation": _artifact(path, base), "replacements": replacements}
            for path, replacements in by_path.items()
        ],
    }


def _fingerprint(diagnostic: Diagnostic, base: Path) -> str:
    # Stable across runs and unaffected by lines moving: path, rule and message.
    rel = _artifact(diagnostic.path, base)["uri"]
    return hashlib.sha256(f"{rel}\0{_rule_id(diagnostic)}\0{diagnostic.message}".encode()).hexdigest()[:32]


def to_sarif(
    diagnostics: Sequence[Diagnostic],
    *,
    base: Path | str,
    tool_version: str,
    problems: Sequence[str] = (),
) -> dict[str, Any]:
    """A SARIF log of one run; `base` is %SRCROOT% (usually the current directory)."""
    base = Path(base).resolve()
    rules: list[dict[str, Any]] = []
    rule_index: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    for diagnostic in diagnostics:
        rule_id = _rule_id(diagnostic)
        if rule_id not in rule_index:
            rule_index[rule_id] = len(rules)
            rule: dict[str, Any] = {
                "id": rule_id,
                "shortDescription": {"text": f"{diagnostic.source} {diagnostic.code or ''}".strip()},
                "defaultConfiguration": {"level": _LEVEL.get(diagnostic.severity, "warning")},
                "properties": {"source": diagnostic.source},
            }
            name = diagnostic.data.get("name")
            if isinstance(name, str) and name:
                rule["name"] = name
            if diagnostic.url:
                rule["helpUri"] = diagnostic.url
            rules.append(rule)
        text = diagnostic.message or rule_id
        if diagnostic.explanation:
            text = f"{text}\n\n{diagnostic.explanation}"
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": rule_index[rule_id],
            "level": _LEVEL.get(diagnostic.severity, "warning"),
            "message": {"text": text},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": _artifact(diagnostic.path, base),
                        "region": _region(diagnostic.range),
                    }
                }
            ],
            "partialFingerprints": {"heedlsFinding/v1": _fingerprint(diagnostic, base)},
            "properties": {"source": diagnostic.source, "rank": diagnostic.rank},
        }
        if diagnostic.related:
            result["relatedLocations"] = [
                {
                    "id": i,
                    "message": {"text": rel.message or "related"},
                    "physicalLocation": {"artifactLocation": _artifact(rel.path, base), "region": _region(rel.range)},
                }
                for i, rel in enumerate(diagnostic.related)
            ]
        if diagnostic.fixes:
            result["fixes"] = [_fix(f, base) for f in diagnostic.fixes if f.edits]
            if not result["fixes"]:
                del result["fixes"]
        if diagnostic.explanation:
            result["properties"]["explanation"] = diagnostic.explanation
        results.append(result)
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "heedls",
                        "version": tool_version,
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"SRCROOT": {"uri": base.as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "invocations": [
                    {
                        "executionSuccessful": True,
                        "toolExecutionNotifications": [
                            {"level": "warning", "message": {"text": problem}} for problem in problems
                        ],
                    }
                ],
                "results": results,
            }
        ],
    }
