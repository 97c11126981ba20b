"""`heedls check PATH… [--tests] [--explain] [--format text|json|sarif] [--fail-on error|warning]`.

The same analyzers as the server (`analyzers.check.check_paths`). Exit codes follow ruff: 0 when
nothing at or above `--fail-on` was found, 1 when something was, 2 for usage or internal errors.
`--format json` prints one JSON object on stdout (DESIGN.md shape: 0-based lines, paths relative to
the current directory); logs and analyzer trouble go to stderr. Colour only on a terminal (rich
decides; NO_COLOR is honoured).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from heedls.server.config import TestsConfig
from heedls.server.words import counted

if TYPE_CHECKING:
    from heedls.analyzers.check import CheckResult
    from heedls.analyzers.model import Diagnostic
    from rich.console import Console

log = logging.getLogger("heedls.check")

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
_RANK = {"error": 0, "warning": 1, "information": 2, "hint": 3}
_STYLE = {"error": "bold red", "warning": "yellow", "information": "cyan", "hint": "dim"}
_STYLES = (*_STYLE.values(), "bold", "dim", "green")  # every style a finding's lines use
# C0 controls but the tab (expanded) and the line feed, and DEL, as Unicode's control pictures (␛, ␍, ␡, …)
_CONTROL_PICTURES = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)} | {0x7F: 0x2421}


# The default is the setting's (typer evaluates the annotations in this module's namespace)
_TIMEOUT_HELP = (
    f"Wall-clock limit of the test run, seconds (default: the tests.timeout_s setting, {TestsConfig().timeout_s:g})."
)

_MEMORY_HELP = (
    "Memory the test processes may hold together, GiB; a test past it is named and the run stopped "
    "(default: 8, or half of the machine's memory when less; 0: no limit)."
)


class Format(str, Enum):
    text = "text"
    json = "json"
    sarif = "sarif"


class FailOn(str, Enum):
    error = "error"
    warning = "warning"


def exit_code(diagnostics: list[Diagnostic], fail_on: str, lint_failed: bool = False) -> int:
    """1 for findings at or above `fail_on`; else 2 when ruff did not run (a clean result that
    leaves lint out must not pass a CI step), else 0."""
    threshold = _RANK[fail_on]
    if any(_RANK.get(d.severity, 9) <= threshold for d in diagnostics):
        return EXIT_FINDINGS
    return EXIT_ERROR if lint_failed else EXIT_CLEAN


class _Said(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"heedls: {record.levelname.lower()}: {record.getMessage()}"


def _log_warnings_to_stderr() -> None:
    """heedls' own log warnings (a configured ruff that is no executable, …) on stderr in the
    command's words (`heedls: warning: …`), where Python's last resort printed them bare."""
    logger = logging.getLogger("heedls")
    if any(isinstance(h.formatter, _Said) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Said())
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def _lint_failed(result: CheckResult) -> bool:
    return result.summary.get("lint") == "failed"


def to_json(result: CheckResult, cwd: Path) -> dict[str, Any]:
    return {
        "diagnostics": [d.to_json(relative_to=str(cwd)) for d in result.diagnostics],
        "summary": result.summary,
    }


# -- text ----------------------------------------------------------------------------------------


class _Lines:
    """One diagnostic's lines, styled for a terminal or plain for a pipe or file.

    Written straight to the console's file in chunks of many diagnostics: rich's rendering (markup
    parsing, wrapping, segments) cost 0.15 ms a line, 3.6 s for the 24,000 lines of 3,284
    findings, where the lines need only a few fixed styles. Each style's escape codes are taken
    from the console once (`_codes`: its colour system, NO_COLOR, a legacy Windows console, which
    gets none), so a terminal gets what rich would write and a pipe or file plain text."""

    def __init__(self, codes: dict[str, tuple[str, str]] | None) -> None:
        self.codes = codes
        self.lines: list[str] = []

    def text(self, value: str) -> str:
        """Text from the checked files (source lines, messages) as a terminal may show it: control
        characters as their visible pictures (an escape sequence in a string literal would
        otherwise be obeyed by the terminal, a carriage return overwrite the line); unchanged for
        a pipe or a file."""
        return value.translate(_CONTROL_PICTURES) if self.codes is not None else value

    def style(self, value: str, style: str) -> str:
        """`value` (plain text) in `style`."""
        if self.codes is None or not style:
            return self.text(value)
        if style not in self.codes:
            raise KeyError(f"no escape codes for style {style!r}: add it to _STYLES")
        before, after = self.codes[style]
        return f"{before}{self.text(value)}{after}"


def _codes(console: Console) -> dict[str, tuple[str, str]] | None:
    """The escape codes the console writes before and after a text in each of `_STYLES` (None
    when it is not a terminal: plain text)."""
    if not console.is_terminal:
        return None
    from rich.text import Text

    codes: dict[str, tuple[str, str]] = {}
    for style in _STYLES:
        with console.capture() as captured:
            console.print(Text("\x00", style=style), end="", soft_wrap=True)
        before, _, after = captured.get().partition("\x00")
        codes[style] = (before, after)
    return codes


# The most of a source line an excerpt shows: a 200,000-character line (minified, generated,
# `((((…))))`) was printed whole for each finding on it, with as many carets under it.
EXCERPT_COLUMNS = 200


def _excerpt(out: _Lines, lines: list[str], diagnostic: Diagnostic) -> None:
    from rich.cells import cell_len  # an emoji or a CJK character takes two columns on the terminal

    start, end = diagnostic.range.start, diagnostic.range.end
    last = min(end.line, start.line + 2, len(lines) - 1)
    width = len(str(last + 1))
    severity = _STYLE.get(diagnostic.severity, "")
    for number in range(start.line, last + 1):
        # the line's own break (a CRLF file's "\r") is not part of what is shown
        text = out.text(lines[number].removesuffix("\r").expandtabs(1)) if number < len(lines) else ""
        lo = start.character if number == start.line else len(text) - len(text.lstrip())
        hi = end.character if number == end.line else len(text)
        hi = max(hi, lo + 1)
        if len(text) > EXCERPT_COLUMNS:  # a minified or generated line: the part around the finding
            left = max(0, min(lo - EXCERPT_COLUMNS // 8, len(text) - EXCERPT_COLUMNS))
            right = left + EXCERPT_COLUMNS
            text = ("…" if left else "") + text[left:right] + ("…" if right < len(text) else "")
            shift = left - (1 if left else 0)
            lo = min(max(lo - shift, 0), len(text))
            hi = max(min(hi - shift, len(text)), lo + 1)
        out.lines.append(f"{out.style(f'{number + 1:>{width}} │', 'dim')} {text}")
        pad, marks = cell_len(text[:lo]), max(cell_len(text[lo:hi]), 1)
        gutter = " " * width + " │"
        out.lines.append(f"{out.style(gutter, 'dim')} {' ' * pad}{out.style('^' * marks, severity)}")


def _paragraphs(text: str) -> list[str]:
    """Markdown paragraphs (blank-line separated; a fenced block stays whole)."""
    out: list[str] = []
    for part in text.split("\n\n"):
        if out and out[-1].count("```") % 2:
            out[-1] += "\n\n" + part
        elif part.strip():
            out.append(part)
    return out


def _unseen(explanation: str, where: str, printed: dict[str, str]) -> str:
    """The explanation without the paragraphs an earlier finding's already printed (a test's
    failure is explained on its most likely line and again on each possible cause: on a terminal,
    once is enough), and a pointer to where they were."""
    paragraphs = _paragraphs(explanation)
    fresh = [p for p in paragraphs if p not in printed]
    earlier = list(dict.fromkeys(printed[p] for p in paragraphs if p in printed))
    for p in fresh:
        printed[p] = where
    if not earlier:
        return explanation
    said = "The rest as explained" if fresh else "As explained"
    return "\n\n".join([*fresh, f"_{said} at {', '.join(earlier)}._"])


def _block(out: _Lines, d: Diagnostic, cwd: Path, cache: dict[str, list[str]], markdown: bool,
           explanation: str | None) -> None:
    """`d` as the lines `print_text` shows (the explanation left out when `markdown`: the caller
    renders it)."""
    from heedls.analyzers.syntax import read_source, source_lines

    shown = os.path.relpath(d.path, cwd)
    pos = f"{shown}:{d.range.start.line + 1}:{d.range.start.character + 1}"
    code = f" {d.code}" if d.code else ""
    out.lines.append(f"{out.style(pos, 'bold')}: {out.style(d.severity, _STYLE.get(d.severity, ''))} "
                     f"{out.style(f'[{d.source}{code}]', 'dim')} {out.text(d.message)}")
    if d.path not in cache:
        try:
            cache[d.path] = source_lines(read_source(d.path).text)  # lines as the positions count them
        except OSError:
            cache[d.path] = []
    if cache[d.path] and d.range.start.line < len(cache[d.path]):
        _excerpt(out, cache[d.path], d)
    seen: dict[str, int] = {}
    for rel in d.related:
        where = f"{os.path.relpath(rel.path, cwd)}:{rel.range.start.line + 1}:{rel.range.start.character + 1}"
        seen[where] = seen.get(where, 0) + 1
        if seen[where] == 1:
            out.lines.append(f"  {out.style('related:', 'dim')} {out.text(where)} {out.text(rel.message)}")
    for where, count in seen.items():
        if count > 1:
            out.lines.append(f"  {out.style(f'related: {where} ({count - 1} more like it)', 'dim')}")
    if explanation and not markdown:
        # Markdown source reads fine in logs and files, and nothing gets cropped
        out.lines.extend(f"  {out.text(line)}" if line else "" for line in explanation.splitlines())


def _tail(out: _Lines, d: Diagnostic) -> None:
    for fix in d.fixes:
        out.lines.append(f"  {out.style(f'fix ({fix.applicability}):', 'green')} {out.text(fix.title)}")
    if d.url:
        out.lines.append(f"  {out.style(d.url, 'dim')}")
    out.lines.append("")


def _flush(console: Console, chunk: list[str]) -> None:
    if chunk:
        console.file.write("\n".join(chunk) + "\n")
        chunk.clear()


def print_text(console: Console, result: CheckResult, cwd: Path, fail_on: str) -> None:
    from rich.markdown import Markdown
    from rich.padding import Padding

    cache: dict[str, list[str]] = {}
    codes = _codes(console)  # None: not a terminal
    chunk: list[str] = []
    printed: dict[str, str] = {}  # explanation paragraph -> the finding it was printed at
    for d in result.diagnostics:
        out = _Lines(codes)
        where = f"{os.path.relpath(d.path, cwd)}:{d.range.start.line + 1}:{d.range.start.character + 1}"
        explanation = _unseen(d.explanation, where, printed) if d.explanation else None
        # Explanations are Markdown (hover shows them too): rendered on a terminal
        markdown = codes is not None and bool(explanation)
        _block(out, d, cwd, cache, markdown, explanation)
        if markdown:
            _flush(console, chunk)
            _flush(console, out.lines)
            # as the lines around it: a test's message may hold escape sequences (`\x1b[2J`), which
            # the terminal would obey (rich passes them on)
            console.print(Padding(Markdown(out.text(explanation or "")), (0, 0, 0, 2)), soft_wrap=False)
        _tail(out, d)
        chunk.extend(out.lines)
        if len(chunk) >= 4096:
            _flush(console, chunk)
    _flush(console, chunk)
    s = result.summary
    if not result.diagnostics:
        if s.get("lint") == "failed":  # the warning above says why
            console.print(f"[yellow]No findings, but ruff did not run:[/yellow] {counted(s.get('files', 0), 'file')} "
                          "checked for syntax only.", highlight=False)
        else:
            console.print(f"[green]All checks passed![/green] ({counted(s.get('files', 0), 'file')})", highlight=False)
    else:
        parts = [counted(s.get("errors", 0), "error"), counted(s.get("warnings", 0), "warning")]
        if s.get("information") or s.get("hints"):
            parts.append(counted(s.get("information", 0) + s.get("hints", 0), "note"))
        console.print(
            f"Found {counted(len(result.diagnostics), 'diagnostic')} ({', '.join(parts)}) "
            f"in {counted(s.get('files', 0), 'file')}.",
            highlight=False,
        )
        if s.get("fixable"):
            console.print(f"[dim]{s['fixable']} fixable with a safe fix.[/dim]", highlight=False)
    tests = s.get("tests")
    if isinstance(tests, dict) and tests.get("ran"):
        counts = ", ".join(f"{k} {v}" for k, v in tests.items() if k in ("passed", "failed", "errors", "skipped"))
        if tests.get("incomplete"):
            counts += " (the run did not complete)"  # its error diagnostic says why
        elif tests.get("outcome") == "no-tests":
            counts = "no tests ran (pytest found none to run)"  # zero counts alone read as a pass
        console.print(f"Tests: {counts or 'ran'}", highlight=False)


def _test_run_incomplete(result: CheckResult) -> str | None:
    """Why the test run asked for did not complete, if it did not."""
    tests = result.summary.get("tests")
    incomplete = tests.get("incomplete") if isinstance(tests, dict) else None
    return incomplete if isinstance(incomplete, str) and incomplete else None


# -- the command ---------------------------------------------------------------------------------


def _options(workspace: Path, timeout: float | None, memory_limit: float | None = None) -> tuple[Any, list[str]]:
    from heedls.analyzers.check import CheckOptions
    from heedls.server import config as config_mod

    config, warnings = config_mod.load(workspace)
    return (
        CheckOptions(
            lint=config.lint.enabled,
            ruff=config.lint.ruff,
            python=config.tests.python or None,
            timeout_s=timeout if timeout is not None else config.tests.timeout_s,
            memory_limit_gb=memory_limit if memory_limit is not None else config.tests.memory_limit_gb,
            max_file_kb=config.lint.max_file_kb,
            # Asking for --tests on the command line is the user's consent to run them.
            trusted=True,
        ),
        warnings,
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds (and cleans up) as Ctrl+C does; the exit status is 143."""


def _terminated(signum: int, frame: Any) -> None:
    raise _Terminated


def run_check(
    paths: list[Path],
    *,
    tests: bool,
    explain: bool,
    fmt: str,
    fail_on: str,
    timeout: float | None,
    output: Path | None,
    memory_limit: float | None = None,
) -> int:
    from heedls.analyzers import check, sarif
    from rich.console import Console

    from heedls import __version__

    err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    _log_warnings_to_stderr()
    cwd = Path.cwd()
    try:
        workspace = check.find_workspace(paths)
        options, warnings = _options(workspace, timeout, memory_limit)
        for warning in warnings:
            err.print(f"heedls: configuration: {warning}", markup=False)
        # the workspace found from the paths again, so that paths of several projects run each
        # project's tests in that project
        def options_for(project: Path) -> Any:  # another project's own [tool.heedls]
            own, said = _options(project, timeout, memory_limit)
            for warning in said:
                err.print(f"heedls: configuration of {project}: {warning}", markup=False)
            return own

        result = check.check_paths(paths, tests=tests, explain=explain, config=options, relative_to=cwd,
                                   options_for=options_for)
    except check.CheckUsageError as exc:
        err.print(f"heedls check: {exc}", markup=False)
        return EXIT_ERROR
    except Exception as exc:  # an internal error is exit 2, like ruff, never a traceback on stdout
        log.debug("check failed", exc_info=True)
        err.print(f"heedls check: internal error: {type(exc).__name__}: {exc}", markup=False)
        return EXIT_ERROR
    for problem in result.problems:
        err.print(f"heedls: warning: {problem}", markup=False)
    if fmt == Format.json.value:
        text = json.dumps(to_json(result, cwd), ensure_ascii=False)
    elif fmt == Format.sarif.value:
        doc = sarif.to_sarif(result.diagnostics, base=cwd, tool_version=__version__, problems=result.problems)
        incomplete = _test_run_incomplete(result)
        if _lint_failed(result):  # not the whole story either: the lint part did not run
            invocation = doc["runs"][0]["invocations"][0]
            invocation["executionSuccessful"] = False
        if incomplete:
            # SARIF's way to say the findings are not the whole story: code scanning must not read
            # a test run that never ran as a clean one
            invocation = doc["runs"][0]["invocations"][0]
            invocation["executionSuccessful"] = False
            invocation["toolExecutionNotifications"].append(
                {"level": "error", "message": {"text": f"the test run did not complete: {incomplete}"}}
            )
        text = json.dumps(doc, ensure_ascii=False, indent=2)
    else:
        text = ""
    if output is None:
        if fmt == Format.text.value:
            print_text(Console(highlight=False, soft_wrap=True, emoji=False), result, cwd, fail_on)
        else:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
        return exit_code(result.diagnostics, fail_on, _lint_failed(result))
    try:
        if fmt == Format.text.value:
            with output.open("w", encoding="utf-8") as handle:
                print_text(Console(file=handle, no_color=True, width=120, soft_wrap=True, emoji=False), result,
                           cwd, fail_on)
        else:
            output.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:  # no such directory, a directory, a full disk: exit 2, never a traceback
        err.print(f"heedls check: cannot write {output}: {exc.strerror or exc}", markup=False)
        return EXIT_ERROR
    return exit_code(result.diagnostics, fail_on, _lint_failed(result))


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_command(
        paths: Annotated[list[Path], typer.Argument(help="Files or directories to check.", show_default=False)],
        tests: Annotated[bool, typer.Option("--tests", help="Also run the related tests (pytest).")] = False,
        explain: Annotated[bool, typer.Option("--explain", help="Add a plain-language explanation.")] = False,
        fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.text,
        fail_on: Annotated[
            FailOn, typer.Option("--fail-on", help="Exit 1 when a finding at or above this severity exists.")
        ] = FailOn.warning,
        timeout: Annotated[
            float | None,
            typer.Option("--timeout", min=0.1, help=_TIMEOUT_HELP),
        ] = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write the report to FILE instead of stdout.")
        ] = None,
        memory_limit: Annotated[
            float | None,
            typer.Option("--memory-limit", min=0.0, metavar="GIB", help=_MEMORY_HELP),
        ] = None,
    ) -> None:
        """Syntax errors, lint findings and (with --tests) test failures, explained.

        Exit status: 0 clean, 1 findings at or above --fail-on, 2 usage or internal error (or ruff did not run).
        """
        # `timeout`, a CI job's cancel or `kill` send SIGTERM: unwind as Ctrl+C does (the test run's
        # process group is killed and its report file removed on the way), where dying at once left
        # pytest running past --timeout and its report behind
        signal.signal(signal.SIGTERM, _terminated)
        try:
            code = run_check(
                paths,
                tests=tests,
                explain=explain,
                fmt=fmt.value,
                fail_on=fail_on.value,
                timeout=timeout,
                output=output,
                memory_limit=memory_limit,
            )
        except _Terminated:
            raise typer.Exit(128 + signal.SIGTERM) from None
        raise typer.Exit(code)
