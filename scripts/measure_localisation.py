#!/usr/bin/env python
"""Fault-localisation quality of heedls' test diagnostics on the dev bug sets.

For every bug of `quixbugs` and `humanevalfix-dev` (under /work/shared/bench by default): copy the bug
folder to a temporary directory (the bench stays untouched), run its test through heedls' runner,
turn the failures into diagnostics, order the diagnostics *in the module under test* by rank
(distinct lines), and check whether a line changed by the reference fix is first (hit@1) or among
the first three (hit@3). Also checks that a test-failure explanation names the failing input and
the wrong value.

The reference solutions are read here, for measurement only: the analyzers never see them.
Changed lines = lines of the buggy module replaced or deleted by the reference fix (blank lines,
comments and the module docstring excluded); for a pure insertion, the lines on either side of it.

    python scripts/measure_localisation.py [--bench DIR] [--sets quixbugs humanevalfix-dev]
        [--only ID ...] [--jobs 2] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from heedls.analyzers.testrun import failures_to_diagnostics, run_tests

BENCH = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "bench", Path("/work/shared/bench")) if p.is_dir()), Path("../shared/bench"))


def _ignorable_lines(source: str) -> set[int]:
    """1-based lines that cannot be "the bug": blank, comment-only, the module docstring."""
    lines = source.splitlines()
    out = {i for i, text in enumerate(lines, 1) if not text.strip() or text.strip().startswith("#")}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            out.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return out


def changed_lines(buggy: str, fixed: str) -> set[int]:
    """Buggy-side code lines the fix changes. Blank lines, comments and module-level strings are left
    out of the comparison on both sides (some QuixBugs references carry an alternative fix inside a
    trailing docstring, which a plain line diff would align the buggy code with)."""
    a_all, b_all = buggy.splitlines(), fixed.splitlines()
    ignore_a, ignore_b = _ignorable_lines(buggy), _ignorable_lines(fixed)
    a = [(i, t.strip()) for i, t in enumerate(a_all, 1) if i not in ignore_a]
    b = [(j, t.strip()) for j, t in enumerate(b_all, 1) if j not in ignore_b]
    out: set[int] = set()
    matcher = difflib.SequenceMatcher(None, [t for _, t in a], [t for _, t in b], autojunk=False)
    for tag, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            out.update(a[k][0] for k in range(i1, i2))
        elif tag == "insert":  # a missing statement: the code lines on either side of the gap
            out.update(a[k][0] for k in (i1 - 1, i1) if 0 <= k < len(a))
    return out


def measure_bug(bug_dir: Path, ref_root: Path) -> dict[str, Any]:
    meta = json.loads((bug_dir / "bug.json").read_text())
    module, test = meta["module"], meta["test"]
    ref = ref_root / bug_dir.name / module
    truth = changed_lines((bug_dir / module).read_text(), ref.read_text()) if ref.exists() else set()
    with tempfile.TemporaryDirectory(prefix="heedls-loc-") as tmp:
        work = Path(tmp) / bug_dir.name
        shutil.copytree(bug_dir, work)
        started = time.monotonic()
        run = run_tests(work, [test], timeout_s=float(meta.get("timeout_s", 30.0)))
        diags = failures_to_diagnostics(run, work)
        target = str((work / module).resolve())
        ranked: list[int] = []
        for d in sorted((d for d in diags if d.path == target), key=lambda d: -d.rank):
            line = d.range.start.line + 1
            if line not in ranked:
                ranked.append(line)
        # Baseline: only the traceback's deepest frame in the code under test, in failure order.
        baseline: list[int] = []
        for failure in run.failures:
            frame = failure.code_frame
            if frame is not None and frame.path == target and frame.line not in baseline:
                baseline.append(frame.line)
        # Does an explanation name the failing input and the wrong value?
        names_input = names_value = False
        for d in diags:
            facts, text = d.data, d.explanation or ""
            if facts.get("kind") != "test_failure":
                continue
            if facts.get("input") and str(facts["input"])[:100] in text.replace("\n", " "):
                names_input = True
            wrong = facts.get("left") if facts.get("exc_type") == "AssertionError" else None
            wrong = wrong if wrong is not None else facts.get("returned")
            if facts.get("exc_type") != "AssertionError":
                names_value = names_value or bool(facts.get("error_message")) or bool(facts.get("code_locals"))
            elif wrong is not None and str(wrong)[:60] in text:
                names_value = True
        elapsed = time.monotonic() - started
    return {
        "id": bug_dir.name,
        "outcome": run.outcome,
        "failed": run.failed,
        "exc_types": sorted({f.exc_type for f in run.failures}),
        "truth": sorted(truth),
        "ranked": ranked[:5],
        "hit1": bool(ranked[:1] and set(ranked[:1]) & truth),
        "hit3": bool(set(ranked[:3]) & truth),
        "baseline": baseline[:5],
        "baseline_hit1": bool(set(baseline[:1]) & truth),
        "baseline_hit3": bool(set(baseline[:3]) & truth),
        "names_input": names_input,
        "names_value": names_value,
        "seconds": round(elapsed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, default=BENCH)
    parser.add_argument("--sets", nargs="+", default=["quixbugs", "humanevalfix-dev"])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    summary: dict[str, Any] = {}
    all_rows: list[dict[str, Any]] = []
    for name in args.sets:
        root = args.bench / name
        bugs = sorted(p for p in root.iterdir() if (p / "bug.json").exists())
        if args.only:
            bugs = [b for b in bugs if b.name in args.only]
        ref_root = args.bench / f"{name}-references"
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            rows = list(pool.map(measure_bug, bugs, [ref_root] * len(bugs)))
        for row in rows:
            row["set"] = name
            mark = "H1" if row["hit1"] else "H3" if row["hit3"] else "--"
            print(f"{mark} {name}/{row['id']}: {row['outcome']} {','.join(row['exc_types'])} truth={row['truth']} "
                  f"ranked={row['ranked']} input={row['names_input']} value={row['names_value']} "
                  f"{row['seconds']}s", file=sys.stderr)
        n = len(rows)
        summary[name] = {
            "bugs": n,
            "hit@1": round(sum(r["hit1"] for r in rows) / n, 3) if n else None,
            "hit@3": round(sum(r["hit3"] for r in rows) / n, 3) if n else None,
            "with_diagnostic_in_module": sum(bool(r["ranked"]) for r in rows),
            "baseline_deepest_frame_hit@1": round(sum(r["baseline_hit1"] for r in rows) / n, 3) if n else None,
            "baseline_deepest_frame_hit@3": round(sum(r["baseline_hit3"] for r in rows) / n, 3) if n else None,
            "baseline_with_frame_in_module": sum(bool(r["baseline"]) for r in rows),
            "explanation_names_input": sum(r["names_input"] for r in rows),
            "explanation_names_value": sum(r["names_value"] for r in rows),
        }
        all_rows += rows
    n = len(all_rows)
    summary["overall"] = {
        "bugs": n,
        "hit@1": round(sum(r["hit1"] for r in all_rows) / n, 3) if n else None,
        "hit@3": round(sum(r["hit3"] for r in all_rows) / n, 3) if n else None,
        "baseline_deepest_frame_hit@3": round(sum(r["baseline_hit3"] for r in all_rows) / n, 3) if n else None,
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "bugs": all_rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
