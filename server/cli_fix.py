"""`heedls fix MODULE [--test TEST_FILE] [--write] [--json] [--budget-seconds N] [--provider …]`.

Searches for a fix proven by the tests (analyzers.repair). Without `--test`, the tests are the
project's test files that import MODULE, else the nearest `test_<name>.py` (as the server picks the
tests to run on save). Without `--write` nothing is touched;
with it the patch is applied to MODULE only when a plausible fix was found. `--json` prints exactly
one object: {"fixed", "patch", "candidates_tried", "test_runs", "seconds", "explanation", …}.
Exit status: 0 fixed or nothing to fix, 1 no fix found, 2 usage/internal error, 143 on SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from heedls.server.config import RepairConfig

log = logging.getLogger("heedls.fix")


class ChatAdapter:
    """A provider's `chat` usable from any event loop: a fresh HTTP client per call.

    The repair engine runs each LLM round in its own thread/loop; a shared httpx client bound to
    another loop would fail there.
    """

    def __init__(self, provider_config: Any) -> None:
        self.config = provider_config

    async def chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, n: int = 1, deadline_s: float
    ) -> list[str]:
        import httpx
        from heedls.server.providers.registry import HTTP_PROVIDERS

        cls = HTTP_PROVIDERS[self.config.name]
        async with httpx.AsyncClient() as client:
            provider = cls(self.config, client)
            result: list[str] = await provider.chat(
                messages, max_tokens=max_tokens, temperature=temperature, n=n, deadline_s=deadline_s
            )
            return result


def build_chat(provider: str | None, endpoint: str | None, model: str | None, cfg: Any) -> Any:
    """The chat model for `--provider` (None = model-free). `config` uses `cfg`'s provider settings
    (the project's [tool.heedls])."""
    if not provider or provider == "none":
        return None
    from dataclasses import replace

    from heedls.server.providers.registry import HTTP_PROVIDERS, config_problems

    pc = cfg.provider
    if provider != "config":
        if provider not in HTTP_PROVIDERS and provider != "local":
            # a typo ran the model-free search without a word, exit 0
            raise typer.BadParameter(f"{provider!r} is none of none, {', '.join(sorted(HTTP_PROVIDERS))}, config",
                                     param_hint="--provider")
        pc = replace(pc, name=provider)
    if endpoint:
        pc = replace(pc, endpoint=endpoint)
    if model:
        pc = replace(pc, model=model)
    if pc.name not in HTTP_PROVIDERS:
        return None
    problems = config_problems(pc)
    if problems:
        raise typer.BadParameter("; ".join(problems), param_hint="--provider")
    return ChatAdapter(pc)


def register(app: typer.Typer) -> None:
    @app.command("fix")
    def fix(
        module: Annotated[Path, typer.Argument(help="The module to repair.")],
        test: Annotated[list[Path] | None, typer.Option(
            "--test", "-t", help="Test file(s) that must pass (default: the project's test files that import "
                                 "MODULE, else the nearest test_<name>.py).")] = None,
        write: Annotated[bool, typer.Option("--write", help="Apply the fix to MODULE.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
        budget_seconds: Annotated[float | None, typer.Option(
            "--budget-seconds", help=f"Wall-clock budget (default: the repair.budget_s setting, {RepairConfig().budget_s:g}).")] = None,
        jobs: Annotated[int | None, typer.Option(
            "--jobs", help=f"Parallel test workers, 0 = one per core (default: the repair.jobs setting, {RepairConfig().jobs}).")] = None,
        provider: Annotated[
            str | None,
            typer.Option("--provider", help="none | openai | ollama | llamacpp | config (the project's provider "
                         "settings) (default: none, model-free)"),
        ] = None,
        endpoint: Annotated[str | None, typer.Option("--endpoint", help="Provider endpoint URL.")] = None,
        model: Annotated[str | None, typer.Option("--model", help="Provider model name.")] = None,
        python: Annotated[str, typer.Option("--python", help="Interpreter for the tests (default: the tests.python "
                                                  "setting, else the project's .venv, venv or env, else this one).")] = "",
        log_level: Annotated[str, typer.Option("--log-level", help="error|warning|info|debug (stderr)")] = "warning",
    ) -> None:
        """Find a fix that makes the failing tests pass (validated by running them)."""
        from heedls.analyzers.check import find_workspace, is_test_file
        from heedls.analyzers.repair.engine import RepairRequest, repair
        from heedls.analyzers.repair.workers import Snapshot
        from heedls.server.app import configure_logging
        from heedls.server.files import ChangedOnDisk, rewrite_source

        configure_logging(log_level.upper())
        # `timeout`, a CI job's cancel or `kill` send SIGTERM: clean up as Ctrl+C does (the runner
        # processes and the temporary workspace copies go), instead of dying with them left behind.
        signal.signal(signal.SIGTERM, _interrupted)
        if not module.is_file():
            typer.echo(f"heedls fix: {module} is not a file", err=True)
            raise typer.Exit(2)
        if not test:
            test = discover_tests(module)
            if not test:
                why = (f"{module} is a test file: give the module it tests, or name the tests with --test"
                       if is_test_file(module) else
                       f"no test file imports {module} or is named test_{module.stem}.py; "
                       "name the tests that must pass with --test")
                typer.echo(f"heedls fix: {why}", err=True)
                raise typer.Exit(2)
            if not as_json:
                typer.echo(f"heedls fix: testing with {', '.join(_shown(t) for t in test)}", err=True)
        missing = [t for t in test if not t.is_file()]
        if missing:
            typer.echo(f"heedls fix: test file not found: {missing[0]}", err=True)
            raise typer.Exit(2)
        if budget_seconds is not None and not budget_seconds > 0:
            typer.echo("heedls fix: --budget-seconds must be positive", err=True)
            raise typer.Exit(2)
        from heedls.server import config as config_mod

        # The module's project (its pyproject.toml), as heedls check and the server read it; a bad
        # value there is warned about once, whether or not a setting of it is used.
        cfg, warnings = config_mod.load(find_workspace([module]))
        for warning in warnings:
            log.warning("configuration: %s", warning)
        chat = build_chat(provider, endpoint, model, cfg)
        if not python:  # the project's [tool.heedls.tests] python
            python = cfg.tests.python
        # the project's [tool.heedls.repair] budget and jobs, as the server's "Search for a fix" uses them
        if budget_seconds is None:
            budget_seconds = cfg.repair.budget_s
        if jobs is None:
            jobs = cfg.repair.jobs
        progress = None
        if not as_json:
            def progress(message: str, fraction: float) -> None:
                log.info("%3d%% %s", int(fraction * 100), message)

        before = module.read_bytes()  # --write never overwrites an edit saved while the search ran
        try:
            before.decode("utf-8")
        except UnicodeDecodeError as exc:
            typer.echo(f"heedls fix: {module} is not UTF-8 text (byte {before[exc.start]:#04x} at offset {exc.start}); "
                       "heedls fix edits UTF-8 source only", err=True)
            raise typer.Exit(2) from None
        # The project as it is before the search: should the test runs have seen it writable (no
        # read-only view here), what they changed in it is put back afterwards (workers.Snapshot).
        root = find_workspace([Path(os.path.commonpath([module.resolve().parent,
                                                         *[t.resolve().parent for t in test]]))])
        snapshot = Snapshot.take(root)
        try:
            result = repair(
                RepairRequest(module=module, tests=list(test), budget_s=budget_seconds, jobs=jobs, python=python,
                              chat=chat),
                progress=progress,
            )
        except _Terminated:  # cleaned up on the way (the runners, the copies); exit as the signal's
            raise typer.Exit(128 + signal.SIGTERM) from None
        tampered = _check_project(snapshot)
        if tampered:
            write = False  # nothing written over a project in that state
        written = False
        if write and result.fixed and result.new_text is not None:
            try:
                rewrite_source(module, result.new_text, expected=before)
                written = True
            except ChangedOnDisk:
                typer.echo(f"heedls fix: {module} was saved while the fix was searched for: not written", err=True)
            except OSError as exc:  # the module is as it was: written whole or not at all
                typer.echo(f"heedls fix: cannot write {module}: {exc.strerror or exc}; it is unchanged", err=True)
        payload = result.to_json()
        payload["written"] = written
        payload["tests"] = [_shown(t) for t in test]  # as given, or as found without --test
        if as_json:
            sys.stdout.write(json.dumps(payload) + "\n")
        else:
            if result.fixed:
                typer.echo(result.patch, nl=False)
                typer.echo(f"\n{result.explanation}", err=True)
                if written:
                    typer.echo(f"applied to {module}", err=True)
            else:
                typer.echo(result.explanation, err=True)
            typer.echo(
                f"{result.candidates_tried} candidates, {result.test_runs} test runs, {result.seconds:.1f}s", err=True
            )
        if result.status == "error" or (write and result.fixed and not written) or tampered:
            raise typer.Exit(2)
        raise typer.Exit(0 if result.fixed or result.status == "no-failing-tests" else 1)


def _check_project(snapshot: Any) -> bool:
    """After the search: did the project's files change while it ran, where the test runs saw them
    writable (workers.unprotected)? Then each changed file is put back as it was before the
    search, its changed content kept beside it (`NAME.heedls-changed-TIME`: a test's write, or an
    edit saved meanwhile: nothing is lost either way), and said on stderr. With the read-only view
    the runs could not write there: a change is the user's own, left alone (and `--write` does
    not write over the module's, as always)."""
    from heedls.analyzers.repair import workers

    why = workers.unprotected(snapshot.root)
    if why is None:
        return False
    changed = snapshot.changed()
    for rel in changed:
        path = snapshot.root / rel
        try:
            restored, backup = snapshot.restore(rel)
        except OSError as exc:
            typer.echo(f"heedls fix: {path} changed during the search and could not be restored: "
                       f"{exc.strerror or exc}", err=True)
            continue
        if not restored:
            typer.echo(f"heedls fix: {path} changed during the search (too big to have been kept: not restored)",
                       err=True)
        else:
            kept = f"; its changed content is in {backup}" if backup else " (it had been removed)"
            typer.echo(f"heedls fix: {path} changed while the tests ran (a test that writes into the project by "
                       f"absolute path?): restored as it was before the search{kept}", err=True)
    if changed:
        typer.echo(f"heedls fix: the test runs could not be given a read-only view of {snapshot.root} ({why}); "
                   "fix the tests that write there, or run heedls fix where user namespaces are allowed", err=True)
    return bool(changed)


def discover_tests(module: Path) -> list[Path]:
    """The test files for MODULE: those of its project that import it, else the nearest
    `test_<name>.py`; `[]` when there are none, or when MODULE is itself a test file (a fix
    "proven" by the tests it edits would prove nothing)."""
    from heedls.analyzers.check import find_workspace, is_test_file
    from heedls.analyzers.testrun import related_tests

    if is_test_file(module):
        return []
    roots = [find_workspace([module])]
    # A folder with no project marker: the tests are as likely beside the current directory.
    here = Path.cwd().resolve()
    if here != roots[0] and module.resolve().is_relative_to(here):
        roots.append(here)
    for root in roots:
        found = related_tests(root, module)
        if found:
            return [Path(f) for f in found]
    return []


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds (and cleans up) as Ctrl+C does, but the exit status is 143, not 130."""


def _interrupted(signum: int, frame: Any) -> None:
    raise _Terminated
