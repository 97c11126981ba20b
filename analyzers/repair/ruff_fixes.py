"""Ruff's own fixes (safe and unsafe) as repair candidates; the tests decide whether they help."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from heedls.analyzers import proc
from heedls.analyzers.repair.edits import Candidate, SourceMap, Span


def ruff_binary() -> str | None:
    local = Path(sys.executable).parent / "ruff"
    return str(local) if local.exists() else shutil.which("ruff")


def candidates(text: str, filename: str, cwd: Path, timeout_s: float = 5.0) -> list[Candidate]:
    ruff = ruff_binary()
    if ruff is None:
        return []
    argv = [ruff, "check", "--output-format", "json", "--unsafe-fixes", "--no-cache", "--isolated",
            "--select", "E,F,B,W", "--stdin-filename", filename, "-"]
    try:
        result = proc.run(argv, cwd=cwd, timeout_s=timeout_s, stdin=text, contain_escapes=False)
        items = json.loads(result.stdout or "[]")
    except (OSError, ValueError):
        return []
    sm = SourceMap(text)
    out: list[Candidate] = []
    for item in items:
        fix = item.get("fix") or {}
        if not fix.get("edits") or fix.get("applicability") == "display-only":
            continue
        spans = []
        for e in fix["edits"]:
            start = sm.starts[e["location"]["row"] - 1] + e["location"]["column"] - 1 if e["location"]["row"] - 1 < len(sm.starts) else len(text)
            end = sm.starts[e["end_location"]["row"] - 1] + e["end_location"]["column"] - 1 if e["end_location"]["row"] - 1 < len(sm.starts) else len(text)
            spans.append(Span(min(start, len(text)), min(end, len(text)), e.get("content", "")))
        prior = 0.35 if fix.get("applicability") == "safe" else 0.25
        out.append(Candidate(tuple(spans), "ruff", f"{item.get('code')}: {fix.get('message') or item.get('message')}",
                             item["location"]["row"], prior, prior, "ruff"))
    return out
