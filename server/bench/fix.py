"""`heedls bench fix BUGSET_DIR [--budget-seconds N] [--jobs N] [--json] [--html FILE]`.

Runs the repair engine over a bug set in the DESIGN.md layout (`<set>/<bug_id>/bug.json`), reading
it in place (each bug is copied to a temporary folder first; `*-references/` is never read). A bug
counts as fixed the way the external scorer counts it: the test file is byte-identical, the module
exists, `python -m pytest -q -x -p no:cacheprovider <test>` passes in a clean copy of the original
folder holding only the final module (plugin autoload off), and the patch does not special-case
the test inputs. The engine's own claim is recorded beside it but not trusted.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import stat
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated, Any

import typer
from heedls.server.stats import quantile

DEFAULT_TIMEOUT_S = 30.0


def load_bugs(bugset: Path) -> list[dict[str, Any]]:
    """Every `<bug_id>/bug.json`, with `timeout_s` as a float (30 s when absent). A bug.json that
    cannot be used stays in the list with an `error` saying why: a bug dropped silently would
    change the total without a word."""
    bugs = []
    for meta_path in sorted(bugset.glob("*/bug.json")):
        if meta_path.parent.name.endswith("-references"):
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            meta = {"error": f"bug.json is not valid JSON: {exc}"}
        if not isinstance(meta, dict):
            meta = {"error": "bug.json is not a JSON object"}
        meta.setdefault("id", meta_path.parent.name)
        meta["dir"] = str(meta_path.parent)
        if "error" not in meta:
            problem = _meta_problem(meta)
            if problem:
                meta["error"] = f"bug.json: {problem}"
        bugs.append(meta)
    return bugs


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What makes a bug.json unusable (None: nothing); normalises `timeout_s` on the way."""
    for key in ("module", "test"):
        if not isinstance(meta.get(key), str) or not meta[key]:
            return f"no {key!r} (a path inside the bug's folder)"
        if not (Path(meta["dir"]) / meta[key]).is_file():
            return f"{key} {meta[key]!r} is not a file in {meta['dir']}"
    raw = meta.get("timeout_s")
    try:
        timeout = DEFAULT_TIMEOUT_S if raw is None or raw == "" else float(raw)
    except (TypeError, ValueError):
        return f"timeout_s {raw!r} is not a number of seconds"
    if not timeout > 0:
        return f"timeout_s {raw!r} is not a positive number of seconds"
    meta["timeout_s"] = timeout
    return None


def _everyday(literal: str) -> bool:
    try:
        return abs(float(literal)) <= 10
    except ValueError:
        return len(literal) <= 3  # '', 'a', "x"


def special_cases_tests(patch: str, test_text: str, original: str) -> bool:
    """Heuristic: an added line compares against a literal taken from the tests that the module
    did not contain before (e.g. `if n == 3005: return 9`)."""
    literals = set(re.findall(r"(?<![\w.])(-?\d+(?:\.\d+)?|'[^'\n]{1,40}'|\"[^\"\n]{1,40}\")", test_text))
    before = set(re.findall(r"(?<![\w.])(-?\d+(?:\.\d+)?|'[^'\n]{1,40}'|\"[^\"\n]{1,40}\")", original))
    for line in patch.splitlines():
        if not line.startswith("+") or line.startswith("+++"):
            continue
        if not re.search(r"==|!=|\bin\b|\bif\b", line):
            continue
        added = set(re.findall(r"(?<![\w.])(-?\d+(?:\.\d+)?|'[^'\n]{1,40}'|\"[^\"\n]{1,40}\")", line[1:]))
        # small integers and one-character strings are everyday constants, not test inputs
        suspicious = {x for x in added & literals - before if not _everyday(x)}
        if suspicious:
            return True
    return False


def copy_bug(bug_dir: Path, dest: Path) -> None:
    """The bug's folder, minus bug.json and caches, writable (the fix is written into it) even
    when the bug set is read-only: copytree keeps the modes."""
    shutil.copytree(bug_dir, dest, ignore=shutil.ignore_patterns("bug.json", "__pycache__"))
    for path in [dest, *dest.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def verify(bug_dir: Path, module: str, test: str, final_module: str, python: str, timeout_s: float) -> bool:
    from heedls.analyzers import proc

    tmp = Path(tempfile.mkdtemp(prefix="heedls-bench-verify-"))
    try:
        clean = tmp / "clean"
        copy_bug(bug_dir, clean)
        (clean / module).write_text(final_module, encoding="utf-8")
        env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONDONTWRITEBYTECODE="1")
        result = proc.run([python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test], cwd=clean,
                          timeout_s=timeout_s, env=env)
        return bool(result.returncode == 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_bug(meta: dict[str, Any], budget_s: float, workers: int, python: str) -> dict[str, Any]:
    from heedls.analyzers.repair.engine import RepairRequest, repair

    bug_dir = Path(meta["dir"])
    row: dict[str, Any] = {"id": meta.get("id", bug_dir.name)}
    if meta.get("error"):
        row.update(fixed=False, claimed=False, status="error", error=meta["error"], seconds=None,
                   first_plausible_s=None, test_runs=0, candidates_tried=0, operator=None, patch="")
        return row
    tmp = Path(tempfile.mkdtemp(prefix="heedls-bench-"))
    try:
        work = tmp / bug_dir.name
        copy_bug(bug_dir, work)
        module, test = work / meta["module"], work / meta["test"]
        test_before = test.read_bytes()
        original = module.read_text(encoding="utf-8")
        start = time.monotonic()
        result = repair(RepairRequest(module=module, tests=[test], budget_s=budget_s, jobs=workers, python=python))
        wall = time.monotonic() - start
        final = result.new_text if result.fixed and result.new_text is not None else original
        if result.fixed:
            module.write_text(final, encoding="utf-8")  # what `heedls fix --write` does
        test_unchanged = test.read_bytes() == test_before
        passes = result.fixed and module.exists() and verify(
            bug_dir, meta["module"], meta["test"], final, python, float(meta.get("timeout_s") or DEFAULT_TIMEOUT_S)
        )
        special = bool(result.patch) and special_cases_tests(result.patch, test_before.decode("utf-8", "replace"), original)
        row.update(
            fixed=bool(passes and test_unchanged and not special),
            claimed=result.fixed,
            status=result.status,
            operator=result.operator,
            seconds=round(wall, 2),
            first_plausible_s=None if result.first_plausible_s is None else round(result.first_plausible_s, 2),
            test_runs=result.test_runs,
            candidates_tried=result.candidates_tried,
            special_case=special,
            test_unchanged=test_unchanged,
            patch=result.patch,
        )
    except Exception as exc:  # one broken bug must not sink the whole benchmark  # noqa: BLE001
        row.update(fixed=False, claimed=False, status="error", error=f"{type(exc).__name__}: {exc}", seconds=None,
                   first_plausible_s=None, test_runs=0, candidates_tried=0, operator=None, patch="")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return row


def _pct(values: list[float], q: float) -> float | None:
    return round(quantile(values, q), 2) if values else None


def summarise(rows: list[dict[str, Any]], bugset: Path, budget_s: float, jobs: int, load_before: tuple[float, ...]) -> dict[str, Any]:
    fixed = [r for r in rows if r.get("fixed")]
    firsts = [r["first_plausible_s"] for r in fixed if r.get("first_plausible_s") is not None]
    runs = [r.get("test_runs") or 0 for r in rows]
    operators: dict[str, int] = {}
    for r in fixed:
        operators[r.get("operator") or "?"] = operators.get(r.get("operator") or "?", 0) + 1
    return {
        "bugset": bugset.name,
        "total": len(rows),
        "fixed": len(fixed),
        "fixed_ratio": round(len(fixed) / len(rows), 3) if rows else 0.0,
        "claimed": sum(1 for r in rows if r.get("claimed")),
        "median_first_plausible_s": _pct(firsts, 0.5),
        "p90_first_plausible_s": _pct(firsts, 0.9),
        "median_wall_s": _pct([r["seconds"] for r in rows if r.get("seconds") is not None], 0.5),
        "median_test_runs": statistics.median(runs) if runs else 0,
        "mean_test_runs": round(statistics.fmean(runs), 1) if runs else 0,
        "operators": operators,
        "budget_s": budget_s,
        "jobs": jobs,
        "cores": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "bugs": rows,
    }


def write_html(summary: dict[str, Any], path: Path) -> None:
    rows = "".join(
        f"<tr><td>{html.escape(str(r['id']))}</td><td>{'yes' if r.get('fixed') else 'no'}</td>"
        f"<td>{html.escape(str(r.get('operator') or ''))}</td><td>{r.get('first_plausible_s') or ''}</td>"
        f"<td>{r.get('seconds') or ''}</td><td>{r.get('test_runs')}</td>"
        f"<td><pre>{html.escape(r.get('patch') or '')}</pre></td></tr>"
        for r in summary["bugs"]
    )
    head = {k: v for k, v in summary.items() if k != "bugs"}
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>heedls bench fix</title>"
        f"<h1>heedls bench fix: {html.escape(summary['bugset'])}</h1><pre>{html.escape(json.dumps(head, indent=1))}</pre>"
        "<table border=1 cellpadding=3><tr><th>bug</th><th>fixed</th><th>operator</th><th>first plausible (s)</th>"
        f"<th>wall (s)</th><th>test runs</th><th>patch</th></tr>{rows}</table>",
        encoding="utf-8",
    )


def register(bench_app: typer.Typer) -> None:
    @bench_app.command("fix")
    def bench_fix(
        bugset: Annotated[Path, typer.Argument(help="A bug-set folder: <set>/<bug_id>/bug.json")],
        budget_seconds: Annotated[float, typer.Option("--budget-seconds")] = 20.0,
        jobs: Annotated[int, typer.Option("--jobs", help="Bugs repaired at once.")] = 1,
        as_json: Annotated[bool, typer.Option("--json")] = False,
        html_path: Annotated[Path | None, typer.Option("--html", help="Write an HTML table here.")] = None,
        only: Annotated[str | None, typer.Option("--only", help="Comma-separated bug ids.")] = None,
        python: Annotated[str, typer.Option("--python", help="Interpreter for the tests.")] = sys.executable,
    ) -> None:
        """Repair every bug of a bug set without a model; report fixed/total and times."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if html_path is not None:  # before the run, not after it: a bench takes minutes
            try:
                html_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                typer.echo(f"heedls bench fix: cannot write {html_path}: {exc.strerror or exc}", err=True)
                raise typer.Exit(2) from None
        bugs = load_bugs(bugset)
        if only:
            wanted = set(only.split(","))
            bugs = [b for b in bugs if b.get("id") in wanted or Path(b["dir"]).name in wanted]
        if not bugs:
            typer.echo(f"heedls bench fix: no bugs under {bugset}", err=True)
            raise typer.Exit(2)
        jobs = max(1, jobs)
        workers = max(1, (os.cpu_count() or 1) // jobs)
        load_before = os.getloadavg()
        rows: list[dict[str, Any]] = []
        lock = threading.Lock()
        console = Console(stderr=True)
        with Progress(TextColumn("fix"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[fixed]} fixed"),
                      TimeElapsedColumn(), console=console, transient=as_json) as bar:
            task = bar.add_task("bugs", total=len(bugs), fixed=0)
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(run_bug, b, budget_seconds, workers, python) for b in bugs]
                for fut in as_completed(futures):
                    row = fut.result()
                    with lock:
                        rows.append(row)
                        done_fixed = sum(1 for r in rows if r.get("fixed"))
                    bar.update(task, advance=1, fixed=done_fixed)
                    if not as_json:
                        console.print(f"{row['id']}: error: {row['error']}" if row.get("error") else
                                      f"{row['id']}: {'fixed' if row.get('fixed') else 'not fixed'} "
                                      f"{row.get('operator') or ''} {row.get('seconds')}s", markup=False)
        order = {b.get("id"): i for i, b in enumerate(bugs)}
        rows.sort(key=lambda r: order.get(r["id"], 0))
        summary = summarise(rows, bugset, budget_seconds, jobs, load_before)
        if as_json:
            sys.stdout.write(json.dumps(summary) + "\n")
        else:
            head = {k: v for k, v in summary.items() if k != "bugs"}
            typer.echo(json.dumps(head, indent=1))
        if html_path is not None:  # after the figures are out: a page that cannot be written loses nothing else
            try:
                write_html(summary, html_path)
            except OSError as exc:
                typer.echo(f"heedls bench fix: cannot write {html_path}: {exc.strerror or exc}", err=True)
                raise typer.Exit(1) from None
