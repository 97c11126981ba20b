#!/usr/bin/env python
"""Check that the stage-2 parse shortcuts only say "does not parse" where tree-sitter agrees.

    .venv/bin/python scripts/check_parse_shortcuts.py [--files N] [--seed S]

The acceptance features answer some statements before tree-sitter (`features._surely_invalid`,
and a suggestion with a stray or mismatched closing bracket): its error recovery is the slowest
part of a decision. Those answers must be exactly tree-sitter's, or the feature rows change. This
runs both over real code nobody here wrote, the installed stdlib and site-packages:
1. every line as a statement, and 30 % of them cut at a random column and joined to the rest of
   another line (what a suggestion written over a line looks like): each text the shortcut flags
   must be rejected by tree-sitter;
2. random cut points (prefix = the file up to there; suggestion = the rest of the line, text from
   elsewhere in the file, or the next characters): each statement the stray-closer rule answers
   must be rejected by tree-sitter too.
Prints the counts and every disagreement; exit 1 on any. Run it after changing either rule.
"""

from __future__ import annotations

import argparse
import random
import sys
import sysconfig
from pathlib import Path
from typing import Any

from heedls.server.acceptance import features as F
from rich.progress import track


def _sources(limit: int | None, rng: random.Random) -> list[Path]:
    roots = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
    files = [f for root in sorted(roots) for f in sorted(Path(root).rglob("*.py"))]
    rng.shuffle(files)
    return files[:limit] if limit else files


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def check_lines(files: list[Path], rng: random.Random, parser: Any) -> tuple[int, int, list[str]]:
    texts = flagged = 0
    bad: list[str] = []
    for path in track(files, description="lines"):
        lines = _read(path).split("\n")
        for line in lines:
            if not line.strip():
                continue
            wrap = "if 1:\n" if line[:1] in " \t" else ""
            candidates = [wrap + line + "\n"]
            if rng.random() < 0.3 and len(line) > 4:
                other = lines[rng.randrange(len(lines))]
                cut = wrap + line[:rng.randrange(1, len(line))] + other[rng.randrange(0, max(1, len(other))):] + "\n"
                candidates.append(cut)
            for text in candidates:
                texts += 1
                if F._surely_invalid(text):
                    flagged += 1
                    if not parser.parse(text.encode("utf-8", "replace")).root_node.has_error:
                        bad.append(text)
    return texts, flagged, bad


class _Recorder:
    """A parser that remembers the last text it was given (the statement the rule would answer)."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.last: bytes | None = None

    def parse(self, source: bytes) -> Any:
        self.last = source
        return self.parser.parse(source)


def check_stray(files: list[Path], rng: random.Random, parser: Any, per_file: int = 60) -> tuple[int, int, list[str]]:
    recorder = _Recorder(parser)
    real_parser, real_shortcut = F._python_parser, F._surely_invalid
    F._python_parser = lambda: recorder  # type: ignore[assignment]
    F._surely_invalid = lambda text: False  # judge the stray rule alone
    seen = judged = 0
    bad: list[str] = []
    try:
        for path in track(files, description="cuts"):
            text = _read(path)
            if not text:
                continue
            for _ in range(per_file):
                at = rng.randrange(len(text) + 1)
                prefix, mode = text[max(0, at - 3000):at], rng.random()
                if mode < 0.5:
                    end = text.find("\n", at)
                    sugg = text[at:len(text) if end < 0 else end]
                elif mode < 0.8:
                    start = rng.randrange(len(text) + 1)
                    sugg = text[start:start + rng.randrange(1, 200)]
                else:
                    sugg = text[at:at + rng.randrange(1, 400)]
                state = F._tail_lex(prefix, True)
                if not sugg or state.in_string or state.in_comment or state.line_stack is None:
                    continue
                left_open, stray = F._sugg_lex(prefix, sugg, True)
                if left_open or not stray:
                    continue
                seen += 1
                recorder.last = None
                verdict = F._statement_parses(state, sugg, False, False)
                statement = recorder.last.decode("utf-8", "replace") if recorder.last is not None else None
                if statement is None or "`" in statement or '"""' in statement or "'''" in statement:
                    continue  # answered otherwise, or left to tree-sitter by the rule itself
                judged += 1
                if verdict:
                    bad.append(statement)
    finally:
        F._python_parser, F._surely_invalid = real_parser, real_shortcut
    return seen, judged, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=0, help="at most this many source files (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    parser = F._python_parser()
    if parser is None:
        print("tree-sitter-python is not installed", file=sys.stderr)
        return 2
    files = _sources(args.files or None, random.Random(args.seed))
    texts, flagged, bad_lines = check_lines(files, random.Random(args.seed), parser)
    seen, judged, bad_cuts = check_stray(files, random.Random(args.seed + 1), parser)
    print(f"text shortcut: {texts} texts, {flagged} flagged, {len(bad_lines)} that tree-sitter parses")
    print(f"stray closer: {seen} cuts with one, {judged} answered by the rule, {len(bad_cuts)} that tree-sitter parses")
    for text in (bad_lines + bad_cuts)[:20]:
        print("DISAGREES:", repr(text[:200]))
    return 1 if bad_lines or bad_cuts else 0


if __name__ == "__main__":
    sys.exit(main())
