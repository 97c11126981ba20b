"""`heedls check` without the presentation: run the analyzers over paths and collect one ordered list.

Used by the CLI (`server/cli_check.py`) and by the server's `heedls.runTests`-style batch paths, so
the editor and CI see the same findings. Test runs and explanations belong to other modules
(`testrun`, `explain`), imported lazily so syntax and lint work even when those are absent.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from heedls.analyzers import lint, syntax
from heedls.analyzers.model import Diagnostic, Fix, Position, Severity, TextEdit
from heedls.analyzers.patches import unified_diff
from heedls.analyzers.proc import usable_cpus

log = logging.getLogger("heedls.check")

SEVERITY_ORDER: dict[Severity, int] = {"error": 0, "warning": 1, "information": 2, "hint": 3}
# Directories nobody wants checked; ruff has its own (configurable) excludes for lint.
SKIP_DIRS = {
    ".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", "node_modules", "build", "dist",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", "site-packages", ".eggs",
}
PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "pytest.ini", "tox.ini", ".git")


class CheckUsageError(ValueError):
    """Bad input from the user (a path that does not exist); the CLI exits 2."""


@dataclass
class CheckOptions:
    lint: bool = True
    ruff: str = ""
    python: str | None = None
    timeout_s: float = 60.0
    trusted: bool = True
    memory_limit_gb: float | None = None  # None: testrun's default; 0: no limit
    # A file larger than this (kB; 0: no limit) is not checked, as an open document above
    # lint.maxFileKb in the editor: a 300 MB file took 2.5 minutes and 22 GB of memory
    max_file_kb: int = 1024


@dataclass
class CheckResult:
    diagnostics: list[Diagnostic]
    summary: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # analyzer trouble (ruff missing, ...)


# -- paths ---------------------------------------------------------------------------------------


def python_files(paths: Iterable[Path]) -> list[Path]:
    """Files to check: .py files given explicitly, and those found under given directories."""
    return _walk_python(paths)[0]


def _walk_python(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """(.py files to check, .py names under the directories that are no regular file: a FIFO or a
    device named x.py, whose reading would wait for a writer forever)."""
    out: dict[Path, None] = {}
    special: list[Path] = []
    for path in paths:
        if path.is_file():
            if path.suffix in (".py", ".pyi"):
                out[path.resolve()] = None
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
            for name in sorted(files):
                if name.endswith((".py", ".pyi")):
                    file = Path(root) / name
                    if file.is_file():
                        out[file.resolve()] = None
                    elif file.exists():
                        special.append(file.resolve())
    return list(out), special


def _within_size(files: list[Path], limit_kb: int) -> tuple[list[Path], list[tuple[Path, int]]]:
    """(files of at most `limit_kb` kB, [(larger file, its size in bytes)]); 0: no limit."""
    if limit_kb <= 0:
        return files, []
    kept: list[Path] = []
    large: list[tuple[Path, int]] = []
    for file in files:
        try:
            size = file.stat().st_size
        except OSError:  # gone since the walk: reading it says so
            size = 0
        if size > limit_kb * 1024:
            large.append((file, size))
        else:
            kept.append(file)
    return kept, large


def find_workspace(paths: Sequence[Path]) -> Path:
    """The project the paths belong to: the nearest ancestor with a project marker, else the
    directory given (or the file's folder). Tests and ruff run from there."""
    if not paths:
        return Path.cwd()
    first = paths[0].resolve()
    start = first if first.is_dir() else first.parent
    for candidate in (start, *start.parents):
        if any((candidate / marker).exists() for marker in PROJECT_MARKERS):
            return candidate
    return start


def is_test_file(path: Path) -> bool:
    return path.suffix == ".py" and (path.name.startswith("test_") or path.stem.endswith("_test"))


def test_targets(paths: Sequence[Path], workspace: Path) -> list[str] | None:
    """pytest targets for the given paths; None means the whole suite."""
    targets: list[str] = []
    related = _related_tests_fn()
    for path in paths:
        path = path.resolve()
        if path == workspace:
            return None
        if path.is_dir() or is_test_file(path):
            targets.append(str(path))
        elif related is not None:
            try:
                found = related(workspace, path)
            except Exception as exc:  # noqa: BLE001 -- a helper of another module must not break check
                log.warning("related_tests failed for %s: %s", path, exc)
                return None
            if not found:
                return None
            targets.extend(str(t) for t in found)
        else:
            return None
    return list(dict.fromkeys(targets)) or None


def _related_tests_fn() -> Any:
    try:
        from heedls.analyzers import testrun
    except ImportError:
        return None
    return getattr(testrun, "related_tests", None)


# -- fixes -----------------------------------------------------------------------------------------


def _line_starts(text: str) -> list[int]:
    """Where each line of `text` starts (its `splitlines` lines), and the text's end."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def _offset(starts: list[int], pos: Position) -> int:
    """`pos` as an offset; a line past the end is the end, a column past a line's end is that end
    (its line break included, as ruff's end of a line is)."""
    if pos.line >= len(starts) - 1:
        return starts[-1]
    return starts[pos.line] + min(pos.character, starts[pos.line + 1] - starts[pos.line])


def apply_edits(text: str, fix: Fix, path: str, starts: list[int] | None = None) -> str:
    """The text after applying the fix's edits for `path` (`starts`: `_line_starts(text)`, when
    the caller has it). Edits are applied back to front, so each one's offsets in the original
    text still hold when it is applied."""
    if starts is None:
        starts = _line_starts(text)
    edits = sorted((e for e in fix.edits if e.path == path), key=lambda e: e.range.start, reverse=True)
    for edit in edits:
        start, end = _offset(starts, edit.range.start), _offset(starts, edit.range.end)
        text = text[:start] + edit.new_text + text[end:]
    return text


def patch_for(fix: Fix, path: str, text: str, display_path: str, starts: list[int] | None = None) -> str:
    return unified_diff(text, apply_edits(text, fix, path, starts), display_path)


def _with_patches(diagnostics: list[Diagnostic], relative_to: Path) -> None:
    texts: dict[str, tuple[str, list[int]] | None] = {}  # each file read and its lines found once
    # the same edits give the same patch: an "Add `import math`" on each of a file's 4,000 reads
    # of `math` is one diff, not 4,000 (each a pass over the file)
    made: dict[tuple[str, tuple[TextEdit, ...]], str] = {}
    for diagnostic in diagnostics:
        if not diagnostic.fixes or all(f.patch for f in diagnostic.fixes):
            continue
        if diagnostic.path not in texts:
            try:
                text = syntax.read_source(diagnostic.path).text
            except OSError:
                texts[diagnostic.path] = None
            else:
                texts[diagnostic.path] = text, _line_starts(text)
        source = texts[diagnostic.path]
        if source is None:
            continue
        text, starts = source
        shown = os.path.relpath(diagnostic.path, relative_to)
        fixes = []
        for f in diagnostic.fixes:
            if not f.patch:
                key = (diagnostic.path, f.edits)
                if key not in made:
                    made[key] = patch_for(f, diagnostic.path, text, shown, starts)
                f = replace(f, patch=made[key])
            fixes.append(f)
        diagnostic.fixes = fixes


# -- explanations ----------------------------------------------------------------------------------


def plain_explanation(diagnostic: Diagnostic) -> str:
    """A short explanation from the diagnostic alone, for kinds the explain module has no rule for."""
    where = f"line {diagnostic.range.start.line + 1}, column {diagnostic.range.start.character + 1}"
    if diagnostic.source == "syntax":
        kind = diagnostic.code or "SyntaxError"
        if diagnostic.data.get("kind") == "UnicodeDecodeError":
            enc = diagnostic.data.get("encoding", "utf-8")
            return (
                f"The file is not valid {enc} at {where}, so Python refuses to read it. Save it as UTF-8, or "
                "declare its real encoding in a `# -*- coding: … -*-` comment on the first or second line."
            )
        if diagnostic.data.get("first", False):
            return (
                f"Python cannot parse this file: {kind} at {where}: {diagnostic.message}. Nothing in the file "
                "runs until this is fixed; errors reported after this one may be consequences of it."
            )
        return (
            f"The parser also stumbles at {where} ({diagnostic.message}). This is often a consequence of an "
            "earlier syntax error; fix that one first."
        )
    if diagnostic.source == "ruff":
        link = f" See {diagnostic.url}." if diagnostic.url else ""
        fix = ""
        if diagnostic.fixes:
            applicability = diagnostic.fixes[0].applicability
            fix = {
                "safe": " ruff has a safe automatic fix for it.",
                "unsafe": " ruff has an automatic fix, but it may change behaviour: review it before applying.",
            }.get(applicability, " ruff can show a suggested change.")
        return f"ruff rule {diagnostic.code} flags {where}: {diagnostic.message}.{fix}{link}"
    return f"{diagnostic.message} ({where})."


def explain_all(diagnostics: list[Diagnostic]) -> list[str]:
    """Fill `explanation` in place; returns the kinds the explain module had no rule for."""
    explain_fn: Any = None
    try:
        from heedls.analyzers import explain as explain_mod

        explain_fn = getattr(explain_mod, "explain", None)
    except ImportError:
        log.debug("heedls.analyzers.explain is not available; plain explanations only")
    missing: list[str] = []
    for diagnostic in diagnostics:
        text: str | None = None
        if explain_fn is not None:
            try:
                text = explain_fn(diagnostic)
            except Exception as exc:  # noqa: BLE001 -- one explanation must not break the report
                log.warning("explain failed for %s %s: %s", diagnostic.source, diagnostic.code, exc)
        if not text:
            missing.append(f"{diagnostic.source}:{diagnostic.code}")
            text = diagnostic.explanation or plain_explanation(diagnostic)
        diagnostic.explanation = text
    return missing


# -- ordering --------------------------------------------------------------------------------------


def order(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Per file (files in path order), most likely cause first: rank, then severity, then position."""
    return sorted(
        diagnostics,
        key=lambda d: (d.path, -d.rank, SEVERITY_ORDER.get(d.severity, 9), d.range.start, d.source, d.code or ""),
    )


def dedupe(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for d in diagnostics:
        key = (d.path, d.range, d.source, d.code, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


# -- the run -------------------------------------------------------------------------------------


def _run_tests(
    workspace: Path, targets: list[str] | None, options: CheckOptions, problems: list[str]
) -> tuple[list[Diagnostic], dict[str, Any]]:
    if not options.trusted:
        problems.append("tests were not run: the workspace is not trusted ([tool.heedls.tests] trusted = false)")
        return [], {"ran": False, "reason": "untrusted"}
    try:
        from heedls.analyzers import testrun
    except ImportError as exc:
        problems.append(f"tests were not run: the test runner is not available ({exc})")
        return [], {"ran": False, "reason": "unavailable"}
    run = testrun.run_tests(workspace, targets, python=options.python, timeout_s=options.timeout_s,
                            memory_limit_gb=options.memory_limit_gb)
    if run.problem and not run.incomplete:
        # Asked for and not run (no pytest in the workspace's interpreter): no pass, as for a run
        # that did not complete: an error diagnostic, exit 1, an unsuccessful SARIF run. A warning
        # alone let a CI job go green.
        run.incomplete = run.problem
    diagnostics = list(testrun.failures_to_diagnostics(run, workspace))
    return diagnostics, {"ran": True, **_run_summary(run)}


def _by_project(paths: Sequence[Path]) -> dict[Path, list[Path]]:
    """The paths grouped by their project (find_workspace), in the order given."""
    groups: dict[Path, list[Path]] = {}
    for path in paths:
        groups.setdefault(find_workspace([path]), []).append(path)
    return groups


# The outcome of several runs: the worst of theirs.
_OUTCOME_ORDER = ("failed", "error", "timeout", "passed", "no-tests")


def _merged_runs(runs: Sequence[tuple[Path, dict[str, Any]]], relative_to: Path) -> dict[str, Any]:
    """One `tests` summary for the runs of several projects: the counts added up, the worst
    outcome, every run that did not complete named, and each project's own under `projects`."""
    out: dict[str, Any] = {"ran": any(s.get("ran") for _, s in runs)}
    for key in ("passed", "failed", "errors", "skipped", "failures", "collected"):
        values = [s[key] for _, s in runs if isinstance(s.get(key), int)]
        if values:
            out[key] = sum(values)
    seconds = [s["seconds"] for _, s in runs if isinstance(s.get("seconds"), (int, float))]
    if seconds:
        out["seconds"] = round(sum(seconds), 3)
    outcomes = [s.get("outcome") for _, s in runs if s.get("outcome") in _OUTCOME_ORDER]
    out["outcome"] = min(outcomes, key=_OUTCOME_ORDER.index) if outcomes else None
    incomplete = [f"{os.path.relpath(p, relative_to)}: {s['incomplete']}" for p, s in runs
                  if isinstance(s.get("incomplete"), str) and s["incomplete"]]
    out["incomplete"] = "; ".join(incomplete) or None
    out["projects"] = [{"workspace": os.path.relpath(p, relative_to), **s} for p, s in runs]
    return out


def _run_summary(run: Any) -> dict[str, Any]:
    """Whatever counts the TestRun carries, as plain JSON values."""
    out: dict[str, Any] = {}
    summary = getattr(run, "summary", None)
    if isinstance(summary, dict):
        out.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool)) or v is None})
    for name in ("passed", "failed", "errors", "skipped", "timed_out", "seconds", "exit_code", "returncode"):
        value = getattr(run, name, None)
        if isinstance(value, (int, float, str, bool)):
            out.setdefault(name, value)
        elif isinstance(value, (list, tuple)):
            out.setdefault(name, len(value))
    for name in ("failures",):
        value = getattr(run, name, None)
        if isinstance(value, (list, tuple)):
            out.setdefault(name, len(value))
    return out


# From this many files the syntax pass is spread over processes: compile() and tree-sitter hold
# the GIL, ~4 ms a file (scikit-learn's 673 files: 2.7 s on one core).
PARALLEL_FROM = 64
_CHUNK = 16


def _syntax_of(file: Path) -> tuple[list[Diagnostic], str | None]:
    """One file's syntax diagnostics, or why it could not be read."""
    try:
        return syntax.check_file(file), None
    except OSError as exc:
        return [], f"{file}: cannot read ({exc.strerror or exc})"


def _syntax_of_all(files: Sequence[Path]) -> Iterable[tuple[list[Diagnostic], str | None]]:
    """`_syntax_of` each file, in order; in worker processes when there are many files and cores.
    Processes are spawned, not forked (the ruff thread is running), and if they cannot be started
    or die, the files they did not answer for are checked here."""
    workers = min(usable_cpus(), 8, -(-len(files) // _CHUNK))
    done = 0
    if len(files) >= PARALLEL_FROM and workers > 1:
        try:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for answer in pool.map(_syntax_of, files, chunksize=_CHUNK):
                    yield answer
                    done += 1
        except (OSError, BrokenProcessPool, RuntimeError) as exc:
            log.warning("checking syntax in %d processes failed (%s); checking the rest here", workers, exc)
    for file in files[done:]:
        yield _syntax_of(file)


def check_paths(
    paths: Sequence[Path | str],
    *,
    workspace: Path | str | None = None,
    tests: bool = False,
    explain: bool = False,
    config: CheckOptions | None = None,
    relative_to: Path | str | None = None,
    options_for: Callable[[Path], CheckOptions] | None = None,
) -> CheckResult:
    """Syntax + lint (+ tests) over `paths`; diagnostics ordered per file, most likely cause first.
    `options_for(project)`: the options of another project's test run (paths of several projects),
    `config` being the first project's."""
    options = config or CheckOptions()
    started = time.monotonic()
    given = [Path(p) for p in paths]
    missing = [str(p) for p in given if not p.exists()]
    if missing:
        raise CheckUsageError(f"no such file or directory: {', '.join(missing)}")
    root = Path(workspace).resolve() if workspace is not None else find_workspace(given)
    files, special = _walk_python(given)
    problems: list[str] = [f"{p}: not a Python file, skipped" for p in given if p.is_file() and p.suffix not in (".py", ".pyi")]
    files, too_large = _within_size(files, options.max_file_kb)
    for file, size in too_large:
        problems.append(f"{os.path.relpath(file, relative_to or Path.cwd())}: {size / 1024:,.0f} kB, above "
                        f"lint.maxFileKb ({options.max_file_kb} kB): not checked (raise the limit, or 0 for none)")
    special = [*special, *(file for file, _ in too_large)]  # ruff skips them too
    diagnostics: list[Diagnostic] = []
    with ThreadPoolExecutor(1, thread_name_prefix="heedls-ruff") as background:
        linted = None
        if options.lint and files:  # ruff runs (a subprocess) while Python checks the syntax
            lintable = [p for p in given if p.is_dir() or p.suffix in (".py", ".pyi")]
            linted = background.submit(lint.lint_paths, lintable, workspace=root, ruff=options.ruff, exclude=special)
        for found, problem in _syntax_of_all(files):
            diagnostics.extend(found)
            if problem:
                problems.append(problem)
        lint_state = "off" if not options.lint else "ok"
        if linted is not None:
            result = linted.result()
            if result.problem:
                problems.append(result.problem)
                lint_state = "failed"  # what ruff would have found is not in the result
            diagnostics.extend(result.diagnostics)
    rel = Path(relative_to) if relative_to is not None else Path.cwd()
    tests_summary: dict[str, Any] | None = None
    if tests:
        # Paths of several projects: each project's tests in that project (its rootdir, conftest and
        # interpreter), one run after another; the first project's alone left the others untested.
        projects = {root: given} if workspace is not None else _by_project(given)
        runs: list[tuple[Path, dict[str, Any]]] = []
        for project, members in projects.items():
            own = options_for(project) if options_for is not None and project != root else options
            test_diagnostics, run_summary = _run_tests(project, test_targets(members, project), own, problems)
            diagnostics.extend(test_diagnostics)
            runs.append((project, run_summary))
        tests_summary = runs[0][1] if len(runs) == 1 else _merged_runs(runs, rel)
    diagnostics = order(dedupe(diagnostics))
    problems[:] = dict.fromkeys(problems)  # one project's words per run are said once
    _with_patches(diagnostics, rel)
    if explain:
        missing_rules = explain_all(diagnostics)
        if missing_rules:
            log.debug("no explain rule for: %s", sorted(set(missing_rules)))
    else:
        for diagnostic in diagnostics:
            diagnostic.explanation = None
    counts = Counter(d.severity for d in diagnostics)
    summary: dict[str, Any] = {
        "files": len(files),
        "diagnostics": len(diagnostics),
        "errors": counts.get("error", 0),
        "warnings": counts.get("warning", 0),
        "information": counts.get("information", 0),
        "hints": counts.get("hint", 0),
        "by_source": dict(sorted(Counter(d.source for d in diagnostics).items())),
        "fixable": sum(1 for d in diagnostics if any(f.applicability == "safe" for f in d.fixes)),
        "tests": tests_summary,
        "workspace": os.path.relpath(root, rel),
        "problems": problems,
        "lint": lint_state,  # ok | off | failed (ruff missing, broken or out of time: see problems)
        "seconds": round(time.monotonic() - started, 3),
    }
    return CheckResult(diagnostics, summary, problems)
