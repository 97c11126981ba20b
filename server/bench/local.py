"""`heedls bench local`: latency and quality of the `local` provider on real code nobody here wrote.

Cut-point protocol (docs/local-provider.md has the rationale):
1. Projects are the packages of the roots (default: the stdlib and the venv's site-packages; each
   folder with an `__init__.py` directly under a root is one project; `--root DIR` replaces them).
2. Files (40 lines to 200 KB) are sampled with the seed, at most two per project; each yields the
   same number of cut points, half at line starts (after the indentation, where an editor leaves
   the cursor after Enter) and half mid-line (a uniform column inside the line's code).
3. The provider indexes the project as it would a workspace; the file under test is excluded from
   that index (the provider always excludes the current document: its prefix feeds the cache
   component). The request sees only the text before the cut: no suffix, as when writing new code.
4. The first candidate goes through the pipeline's post-processing; it is *shown* when non-empty.
   *Exact* = its first line equals the rest of the line; *chars saved* = its length when the file
   really continues with it, else 0.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from heedls.server.providers.base import CompletionRequest
from heedls.server.stats import quantile

SKIP_PROJECTS = frozenset({"test", "encodings", "heedls", "__phello__", "pydoc_data", "idlelib"})
TARGETS = {"exact_of_shown": 0.20, "shown_rate": 0.30, "p95_ms": 50.0}


@dataclass(frozen=True)
class CutPoint:
    path: Path
    offset: int  # character offset of the cursor in the file
    line: int
    column: int
    kind: str  # "start" | "mid"
    rest: str  # the rest of the line after the cursor (the target)


def default_roots() -> list[Path]:
    roots = [Path(sysconfig.get_paths()["stdlib"])]
    purelib = Path(sysconfig.get_paths()["purelib"])
    if purelib.exists():
        roots.append(purelib)
    return roots


def find_projects(roots: list[Path]) -> list[Path]:
    projects: list[Path] = []
    for root in roots:
        root = root.resolve()
        subs = sorted(p for p in root.iterdir() if p.is_dir() and (p / "__init__.py").exists())
        subs = [p for p in subs if p.name not in SKIP_PROJECTS and not p.name.startswith(("_", "."))]
        if subs:
            projects.extend(subs)
        elif any(root.glob("*.py")):
            projects.append(root)
    return projects


def _eligible_files(project: Path) -> list[Path]:
    out = []
    for path in sorted(project.rglob("*.py")):
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if 1_000 <= size <= 200_000:
            out.append(path)
    return out


def sample_cut_points(text: str, path: Path, count: int, rng: random.Random) -> list[CutPoint]:
    lines = text.split("\n")
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln) + 1)
    code_lines = [i for i, ln in enumerate(lines) if ln.strip()]
    if not code_lines:
        return []
    cuts: list[CutPoint] = []
    for k in range(count):
        i = rng.choice(code_lines)
        line = lines[i].rstrip()
        indent = len(line) - len(line.lstrip())
        if k % 2 == 0 or len(line) - indent < 2:
            kind, col = "start", indent
        else:
            kind, col = "mid", rng.randint(indent + 1, len(line) - 1)
        cuts.append(CutPoint(path, offsets[i] + col, i, col, kind, line[col:]))
    return cuts


def _rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    shown = [r for r in rows if r["shown"]]
    exact = sum(r["exact"] for r in shown)
    saved = sum(r["saved"] for r in shown)
    return {
        "cut_points": n,
        "shown": len(shown),
        "shown_rate": round(len(shown) / n, 4) if n else 0.0,
        "exact_match_of_shown": round(exact / len(shown), 4) if shown else 0.0,
        "exact_match_of_all": round(exact / n, 4) if n else 0.0,
        "correct_prefix_of_shown": round(sum(r["saved"] > 0 for r in shown) / len(shown), 4) if shown else 0.0,
        "chars_saved_per_shown": round(saved / len(shown), 3) if shown else 0.0,
        "chars_saved_per_cut": round(saved / n, 3) if n else 0.0,
    }


def _ece(rows: list[dict[str, Any]], bins: int = 10) -> float:
    """Expected calibration error of `confidence` against exact match, over shown suggestions."""
    shown = [r for r in rows if r["shown"] and r["confidence"] is not None]
    if not shown:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [r for r in shown if lo <= r["confidence"] < hi or (b == bins - 1 and r["confidence"] == 1.0)]
        if inside:
            conf = statistics.fmean(r["confidence"] for r in inside)
            acc = statistics.fmean(float(r["exact"]) for r in inside)
            total += len(inside) / len(shown) * abs(conf - acc)
    return round(total, 4)


async def run_bench(
    roots: list[Path],
    cuts: int,
    seed: int,
    per_file: int = 25,
    use_jedi: bool = True,
    min_confidence: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    dump: Path | None = None,
) -> dict[str, Any]:
    from heedls.server.providers.local import IndexLimits, LocalProvider

    rng = random.Random(seed)
    projects = find_projects(roots)
    rng.shuffle(projects)
    from heedls.server.pipeline.postprocess import first_shown, postprocess
    n_files = max(1, math.ceil(cuts / per_file))
    plan: list[tuple[Path, list[Path]]] = []
    chosen = 0
    for project in projects:
        files = _eligible_files(project)
        if len(files) < 3:
            continue  # nothing left to index once the file is held out
        picked = rng.sample(files, min(2, len(files), n_files - chosen))
        plan.append((project, picked))
        chosen += len(picked)
        if chosen >= n_files:
            break
    rows: list[dict[str, Any]] = []
    latencies: list[float] = []
    cpu_times: list[float] = []
    builds: list[dict[str, float]] = []
    done = 0
    total = chosen * per_file
    limits = IndexLimits(max_files=400, max_tokens=1_500_000)
    with tempfile.TemporaryDirectory(prefix="heedls-bench-local-") as tmp:
        for project, files in plan:
            kwargs: dict[str, Any] = {"limits": limits, "use_jedi": use_jedi}
            if min_confidence is not None:
                kwargs["min_confidence"] = min_confidence
            provider = LocalProvider(project, cache_dir=Path(tmp), **kwargs)
            provider.index_now()
            provider.warm_up()  # as the server's start_indexing() does at start-up
            builds.append(provider.index_stats())
            for path in files:
                text = path.read_text(encoding="utf-8", errors="replace")
                points = sample_cut_points(text, path, per_file, rng)
                points.sort(key=lambda c: c.offset)  # as a user types: top to bottom
                for cut in points:
                    prefix = text[: cut.offset]
                    request = CompletionRequest(
                        prefix=prefix, suffix="", path=str(path), line=cut.line, character=cut.column,
                        document=prefix,
                    )
                    t0, c0 = time.perf_counter(), time.process_time()
                    cands = await provider.complete(request, 1.0)
                    latencies.append((time.perf_counter() - t0) * 1000)
                    # CPU time of this process (all its threads): what the request costs, whatever
                    # else the machine is doing. Wall-clock latency includes waiting for a core.
                    cpu_times.append((time.process_time() - c0) * 1000)
                    # what the server shows: the first candidate that survives postprocess
                    shown = first_shown(cands, request)
                    shown_text, picked = shown if shown is not None else (None, None)
                    continuation = text[cut.offset :]
                    row = {
                        "kind": cut.kind,
                        "shown": bool(shown_text),
                        "exact": shown_text is not None
                        and shown_text.split("\n")[0].rstrip() == cut.rest.rstrip(),
                        "saved": len(shown_text) if shown_text and continuation.startswith(shown_text) else 0,
                        "confidence": picked.confidence if picked else None,
                        "raw": picked.meta.get("raw") if picked else None,
                        "source": picked.source if picked else None,
                    }
                    if dump is not None:
                        # Every candidate with its label: the calibration fit reads these.
                        alts = []
                        for cand in cands:
                            pp = postprocess(cand.text, request)
                            alts.append({
                                "source": cand.source, "meta": dict(cand.meta), "text": pp,
                                "confidence": cand.confidence,
                                "exact": pp is not None and pp.split("\n")[0].rstrip() == cut.rest.rstrip(),
                            })
                        row.update(file=str(path), rest=cut.rest, text=shown_text, candidates=alts,
                                   line_start=not prefix.rsplit("\n", 1)[-1].strip())
                    rows.append(row)
                    done += 1
                    if progress:
                        progress(done, total)
            await provider.aclose()
    if dump is not None:
        with dump.open("w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")
    by_source: dict[str, Any] = {}
    for source in sorted({r["source"] for r in rows if r["shown"] and r["source"]}):
        sub = [r for r in rows if r["shown"] and r["source"] == source]
        by_source[source] = {
            "shown": len(sub),
            "exact_match": round(sum(r["exact"] for r in sub) / len(sub), 4),
            "mean_confidence": round(statistics.fmean(r["confidence"] or 0.0 for r in sub), 4),
        }
    overall = _rates(rows)
    p50, p95 = quantile(latencies, 0.50), quantile(latencies, 0.95)
    result: dict[str, Any] = {
        "benchmark": "local",
        "seed": seed,
        "projects": len(plan),
        "files": chosen,
        **overall,
        "by_kind": {k: _rates([r for r in rows if r["kind"] == k]) for k in ("start", "mid")},
        "by_source": by_source,
        "ece": _ece(rows),
        "latency_ms": {
            "p50": round(p50, 2),
            "p95": round(p95, 2),
            "mean": round(statistics.fmean(latencies), 2) if latencies else 0.0,
            "max": round(max(latencies), 2) if latencies else 0.0,
        },
        "cpu_ms": {
            "p50": round(quantile(cpu_times, 0.50), 2),
            "p95": round(quantile(cpu_times, 0.95), 2),
            "mean": round(statistics.fmean(cpu_times), 2) if cpu_times else 0.0,
        },
        "index": {
            "mean_files": round(statistics.fmean(b["files"] for b in builds), 1) if builds else 0,
            "mean_tokens": round(statistics.fmean(b["tokens"] for b in builds)) if builds else 0,
            "mean_build_s": round(statistics.fmean(b["built_s"] for b in builds), 3) if builds else 0,
        },
        "jedi": use_jedi,
        # Latency depends on what else the machine is doing: record it next to the figures.
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        "protocol": "held-out file, project index without it; prefix only; the first candidate left after post-processing (what the server shows)",
        "targets": TARGETS,
    }
    result["targets_met"] = (
        result["exact_match_of_shown"] >= TARGETS["exact_of_shown"]
        and result["shown_rate"] >= TARGETS["shown_rate"]
        and result["latency_ms"]["p95"] <= TARGETS["p95_ms"]
    )
    return result


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"local provider — {result['cut_points']} cut points, {result['files']} files, "
                  f"{result['projects']} projects (seed {result['seed']})")
    table.add_column("metric")
    for col in ("all", "line start", "mid-line"):
        table.add_column(col, justify="right")
    rows = [
        ("shown rate", "shown_rate", "{:.1%}"),
        ("exact match of shown", "exact_match_of_shown", "{:.1%}"),
        ("exact match of all", "exact_match_of_all", "{:.1%}"),
        ("correct prefix of shown", "correct_prefix_of_shown", "{:.1%}"),
        ("chars saved / shown", "chars_saved_per_shown", "{:.2f}"),
        ("chars saved / cut", "chars_saved_per_cut", "{:.2f}"),
    ]
    for label, key, fmt in rows:
        table.add_row(label, fmt.format(result[key]), fmt.format(result["by_kind"]["start"][key]),
                      fmt.format(result["by_kind"]["mid"][key]))
    lat = result["latency_ms"]
    table.add_row("latency p50 / p95 (ms)", f"{lat['p50']:.1f} / {lat['p95']:.1f}", "", "")
    cpu = result["cpu_ms"]
    table.add_row("CPU time p50 / p95 (ms)", f"{cpu['p50']:.1f} / {cpu['p95']:.1f}", "", "")
    table.add_row("machine load (1 min) / cpus", f"{result['load_avg_1m']} / {result['cpus']}", "", "")
    table.add_row("calibration error (ECE)", f"{result['ece']:.3f}", "", "")
    table.add_row("targets met", "yes" if result["targets_met"] else "no", "", "")
    Console().print(table)


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("local")
    def bench_local(
        json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
        root: Annotated[
            Optional[list[Path]],  # noqa: UP045 (typer needs Optional here)
            typer.Option("--root", exists=True, file_okay=False,
                         help="Folder of projects (repeatable; default: stdlib and site-packages)."),
        ] = None,
        cuts: Annotated[int, typer.Option("--cuts", min=1, help="Number of cut points.")] = 2000,
        seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
        per_file: Annotated[int, typer.Option("--per-file", min=1, help="Cut points per file.")] = 25,
        jedi: Annotated[bool, typer.Option("--jedi/--no-jedi", help="Include jedi completions.")] = True,
        min_confidence: Annotated[
            Optional[float], typer.Option("--min-confidence", help="Override the provider's floor.")  # noqa: UP045
        ] = None,
        dump: Annotated[
            Optional[Path], typer.Option("--dump", help="Write one JSON line per cut point here.")  # noqa: UP045
        ] = None,
    ) -> None:
        """Latency p50/p95 and suggestion quality of the local provider on held-out real code."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        roots = list(root) if root else default_roots()
        err = Console(stderr=True)
        with Progress(TextColumn("local bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("cuts", total=cuts)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = asyncio.run(run_bench(roots, cuts, seed, per_file, jedi, min_confidence, tick, dump))
        if json_out:
            sys.stdout.write(json.dumps(result) + "\n")
        else:
            _print_table(result)
