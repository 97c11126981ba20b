"""Lint findings from ruff, run as a subprocess with its JSON output.

ruff runs with cwd = the workspace root and gets the real file name (`--stdin-filename` for
buffers), so it finds and applies the workspace's own configuration (pyproject.toml / ruff.toml,
including excludes, thanks to `--force-exclude`) exactly as `ruff check` on the command line would.
Which ruff: the configured path, else the workspace's virtualenv, else PATH, else the copy bundled
with heedls (the `ruff` package's `find_ruff_bin`).

A missing or broken ruff is reported as one `problem` string, never an exception: lint is a
nice-to-have next to syntax errors and test failures.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from heedls.analyzers import imports, proc, pyparse
from heedls.analyzers.lines import split_lines
from heedls.analyzers.model import Applicability, Diagnostic, Fix, Position, Range, Severity, TextEdit

log = logging.getLogger("heedls.lint")

SOURCE = "ruff"
# ruff reports parse errors too; the syntax analyzer owns those (with the interpreter's message).
_SYNTAX_CODES = {None, "", "invalid-syntax", "E999"}
# Findings that are almost certainly bugs (the code fails at run time), shown as errors; the rest
# are warnings, as ruff's own language server shows them.
_ERROR_CODES = {"F821", "F822", "F823", "F701", "F702", "F704", "F706", "F707", "E902", "PLE0101", "PLE0116"}
# Unused things are drawn faded in editors (DiagnosticTag.Unnecessary); deprecated ones struck out.
_IDENTIFIER = re.compile(r"[^\W\d]\w*")  # the attribute read after an undefined name and a dot
_UNNECESSARY = {"F401", "F841", "F811", "F632", "ERA001", "ARG001", "ARG002", "RUF100"}
_APPLICABILITY: dict[str, Applicability] = {"safe": "safe", "unsafe": "unsafe", "display-only": "display-only"}
_BASE_ARGS = ["check", "--output-format", "json", "--no-cache", "--exit-zero", "--force-exclude"]


@dataclass
class LintResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    problem: str | None = None  # one human-readable line when ruff is missing or failed
    ruff: str | None = None
    seconds: float = 0.0


def find_ruff(workspace: Path | None = None, configured: str = "") -> str | None:
    """Path of the ruff to use, or None when there is none at all."""
    if configured:
        configured = os.path.expanduser(os.path.expandvars(configured))
        if os.sep in configured and not os.path.isabs(configured) and workspace is not None:
            configured = str(workspace / configured)  # relative to the project, not to where heedls started
        found = shutil.which(configured) if os.sep not in configured else configured
        if found and os.access(found, os.X_OK):
            return found
        log.warning("configured ruff %r is not an executable; looking elsewhere", configured)
    if workspace is not None:
        for venv in (".venv", "venv"):
            candidate = workspace / venv / "bin" / "ruff"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    on_path = shutil.which("ruff")
    if on_path:
        return on_path
    try:
        from ruff.__main__ import find_ruff_bin  # the bundled dependency

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        return None


def _range(start: dict[str, Any] | None, end: dict[str, Any] | None, bom: bool = False) -> Range:
    # ruff: 1-based row, 1-based column counted in characters, a byte-order mark not counted (the
    # text it was given still has it when `bom`: its first line's columns are one further on).
    s = start or {"row": 1, "column": 1}
    e = end or s

    def position(p: dict[str, Any]) -> Position:
        row = max(int(p["row"]) - 1, 0)
        return Position(row, max(int(p["column"]) - 1, 0) + (1 if bom and row == 0 else 0))

    return Range(position(s), position(e))


def _fix(raw: dict[str, Any] | None, path: str, code: str, bom: bool = False) -> Fix | None:
    if not raw or not raw.get("edits"):
        return None
    edits = tuple(
        TextEdit(path, _range(edit.get("location"), edit.get("end_location"), bom), edit.get("content") or "")
        for edit in raw["edits"]
    )
    applicability = _APPLICABILITY.get(str(raw.get("applicability")), "display-only")
    title = raw.get("message") or f"Fix {code}"
    return Fix(title=f"{title} ({code})", edits=edits, applicability=applicability, source=SOURCE)


def _broken_link(name: str) -> bool:
    try:
        return bool(name) and os.path.islink(name) and not os.path.exists(name)
    except (OSError, ValueError):
        return False


def to_diagnostics(findings: Sequence[dict[str, Any]], path_override: str | None = None,
                   bom: bool = False) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    resolved: dict[str, str] = {}  # ruff reports each file's name with every finding in it
    for item in findings:
        code = item.get("code")
        if code in _SYNTAX_CODES:
            continue
        path = path_override
        if not path:
            name = str(item.get("filename") or "")
            path = resolved.get(name)
            if path is None:
                path = resolved[name] = str(Path(name).resolve())
        severity: Severity = "error" if code in _ERROR_CODES else "warning"
        message = str(item.get("message", ""))
        if code == "E902" and not path_override and _broken_link(str(item.get("filename") or "")):
            # its resolved path is the missing target, which is no file of the project: name the
            # link, and say what it is rather than "No such file or directory"
            name = str(item.get("filename") or "")
            path = str(Path(name).absolute())
            severity = "warning"
            message = f"not linted: a broken symbolic link (its target {os.readlink(name)} does not exist)"
        elif code == "E902" and "UTF-8" in message:
            # ruff reads UTF-8 only; Python also reads a file whose coding cookie names another
            # encoding (latin-1), so this is no error in the code: say it was not linted
            severity = "information"
            message = f"not linted: ruff reads only UTF-8 files ({message})"
        fix = _fix(item.get("fix"), path, str(code), bom)
        data: dict[str, Any] = {"name": item.get("name"), "noqa_row": item.get("noqa_row")}
        if code in _UNNECESSARY:
            data["tags"] = ["unnecessary"]
        out.append(
            Diagnostic(
                path=path,
                range=_range(item.get("location"), item.get("end_location"), bom),
                severity=severity,
                source=SOURCE,
                code=str(code),
                message=message,
                fixes=[fix] if fix else [],
                url=item.get("url"),
                # Lint findings rarely explain a failing test; below syntax errors and failures.
                rank=0.3 if severity == "error" else 0.1,
                data=data,
            )
        )
    return out


# ruff's JSON report is needed whole (a cut one parses as nothing): ~700 bytes a finding, so this
# is ~350,000 findings; proc's default cap (1 MiB) lost every finding past ~1,400 of them.
REPORT_CAP = 256 << 20


def _parse(result: proc.ProcResult, ruff: str, path_override: str | None, bom: bool = False) -> LintResult:
    if result.truncated and result.returncode == 0:
        return LintResult(problem=f"ruff's report is over {REPORT_CAP >> 20} MiB; no lint findings are shown "
                                  "(lint fewer files at a time)", ruff=ruff, seconds=result.seconds)
    if result.timed_out:
        return LintResult(problem=f"ruff timed out after {result.seconds:.1f}s", ruff=ruff, seconds=result.seconds)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        # ruff's first line is only "ruff failed"; why is on its "Cause:" lines after it
        causes = [line.removeprefix("Cause:").strip() for line in lines if line.startswith("Cause:")]
        why = "; ".join(causes) if causes else (lines[0] if lines else "no output")
        return LintResult(
            problem=f"ruff failed (exit {result.returncode}): {why[:300]}", ruff=ruff, seconds=result.seconds
        )
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as exc:
        return LintResult(problem=f"ruff printed something that is not JSON ({exc})", ruff=ruff, seconds=result.seconds)
    if not isinstance(findings, list):
        return LintResult(problem="ruff's JSON output is not a list", ruff=ruff, seconds=result.seconds)
    return LintResult(to_diagnostics(findings, path_override, bom), None, ruff, result.seconds)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RUFF_OUTPUT_FORMAT", None)  # would override --output-format json
    env["NO_COLOR"] = "1"
    return env


def _missing(configured: str) -> LintResult:
    hint = f" (configured: {configured!r})" if configured else ""
    return LintResult(problem=f"ruff was not found{hint}; lint diagnostics are off (pip install ruff)")


def lint_text(
    text: str,
    path: Path | str,
    *,
    workspace: Path | str,
    ruff: str = "",
    timeout_s: float = 10.0,
    trusted: bool = True,
) -> LintResult:
    """Lint an editor buffer as if it were saved at `path` (the workspace's config applies). In an
    untrusted workspace the ruff of its own virtual environment is never run (it could be anything)."""
    workspace = Path(workspace)
    exe = find_ruff(workspace if trusted else None, ruff)
    if exe is None:
        return _missing(ruff)
    path = Path(path)
    argv = [exe, *_BASE_ARGS, "--stdin-filename", str(path), "-"]
    try:
        result = proc.run(argv, cwd=workspace, timeout_s=timeout_s, env=_env(), stdin=text, output_cap=REPORT_CAP,
                          contain_escapes=False)
    except OSError as exc:
        return LintResult(problem=f"ruff could not be started: {exc}", ruff=exe)
    linted = _parse(result, exe, str(path.resolve()), bom=text.startswith("\ufeff"))
    add_import_fixes(linted.diagnostics, lambda _: text)
    return linted


def lint_paths(
    paths: Sequence[Path | str],
    *,
    workspace: Path | str,
    ruff: str = "",
    timeout_s: float = 120.0,
    exclude: Sequence[Path | str] = (),
) -> LintResult:
    """Lint files and directories on disk in one ruff run (ruff walks directories itself; it skips
    `exclude`)."""
    workspace = Path(workspace)
    exe = find_ruff(workspace, ruff)
    if exe is None:
        return _missing(ruff)
    if not paths:
        return LintResult(ruff=exe)
    argv = [exe, *_BASE_ARGS, *[arg for p in exclude for arg in ("--extend-exclude", str(p))],
            *[str(Path(p).resolve()) for p in paths]]
    try:
        result = proc.run(argv, cwd=workspace, timeout_s=timeout_s, env=_env(), output_cap=REPORT_CAP,
                          contain_escapes=False)
    except OSError as exc:
        return LintResult(problem=f"ruff could not be started: {exc}", ruff=exe)
    linted = _parse(result, exe, None)
    add_import_fixes(linted.diagnostics, _read_text)
    return linted


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            return fh.read()
    except OSError:
        return None


def add_import_fixes(diagnostics: list[Diagnostic], text_of: Callable[[str], str | None]) -> None:
    """An "Add `import math`" fix on each F821 "Undefined name" the standard library has a name
    for (analyzers/imports.py), which ruff itself has no fix for; "unsafe", so never applied
    unasked (a name may have been meant from elsewhere). `text_of(path)` gives a file's text."""
    wanted = [d for d in diagnostics if d.code == "F821" and not d.fixes]
    texts: dict[str, tuple[str, list[str]] | None] = {}  # a file's text and lines, read once
    trees: dict[str, ast.Module | None] = {}
    placed: dict[tuple[str, str], TextEdit] = {}
    for d in wanted:
        if d.path not in texts:
            read = text_of(d.path)
            texts[d.path] = None if read is None else (read, split_lines(read))
        known = texts[d.path]
        if known is None:
            continue
        text, lines = known
        start, end = d.range.start, d.range.end
        if start.line != end.line or start.line >= len(lines):
            continue
        line = lines[start.line]
        name, following = line[start.character:end.character], line[end.character:end.character + 1]
        attribute = _IDENTIFIER.match(line, end.character + 1) if following == "." else None
        statement = imports.statement_for(name, as_module=following == ".",
                                          attribute=attribute.group() if attribute else None) \
            if name.isidentifier() else None
        if statement is None:
            continue
        if d.path not in trees:
            try:
                trees[d.path] = pyparse.parse(text.removeprefix("\ufeff"))
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                trees[d.path] = None
        tree = trees[d.path]
        if tree is None:
            continue
        key = (d.path, statement)
        if key not in placed:  # once per file and import: each is a pass over the file
            offset, inserted = imports.insertion(text, tree, statement)
            at = _position(lines, offset)
            placed[key] = TextEdit(d.path, Range(at, at), inserted)
        edit = placed[key]
        d.fixes.append(Fix(title=f"Add `{statement}`", edits=(edit,), applicability="unsafe", source="heedls"))


def _position(lines: list[str], offset: int) -> Position:
    for number, line in enumerate(lines):
        if offset < len(line):
            return Position(number, offset)
        offset -= len(line)
    if lines and not lines[-1].endswith(("\n", "\r")):
        return Position(len(lines) - 1, len(lines[-1]) + offset)
    return Position(len(lines), offset)
