"""`heedls eval acceptance …` and `heedls replay …`.

`eval acceptance --json` prints exactly one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

eval_app = typer.Typer(help="Evaluate heedls components on recorded data.", no_args_is_help=True)


class Stage(str, Enum):
    context = "context"
    suggestion = "suggestion"


class Label(str, Enum):
    accepted = "accepted"
    persisted = "persisted"


class Kind(str, Enum):
    logreg = "logreg"
    gbm = "gbm"
    blend = "blend"


@eval_app.command("acceptance")
def eval_acceptance(
    events: Annotated[Path, typer.Argument(help="A heedls.suggestion/1 JSONL file (any origin).")],
    stage: Annotated[Stage, typer.Option("--stage", help="context (stage 1) or suggestion (stage 2)")] = Stage.suggestion,
    label: Annotated[Label, typer.Option("--label", help="accepted, or persisted (accepted and still in code)")] = Label.accepted,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    pretrained: Annotated[bool, typer.Option("--pretrained", help="Score with the shipped model, no fitting.")] = False,
    model_file: Annotated[Path | None, typer.Option("--model-file", help="With --pretrained: this model file instead of the shipped one.")] = None,
    baselines: Annotated[bool, typer.Option("--baselines", help="Also report always-show, Copilot-style filter, suggestion length.")] = False,
    keep: Annotated[float, typer.Option("--keep", help="Share of accepted suggestions to keep, in (0, 1].")] = 0.95,
    kind: Annotated[Kind, typer.Option("--model", help="Learner refitted in each fold.")] = Kind.blend,
    folds: Annotated[bool, typer.Option("--folds", help="Include per-session thresholds in the JSON.")] = False,
    user_bias: Annotated[bool, typer.Option("--user-bias/--no-user-bias", help="Shift each score by its user's own "
                                            "bias, learned online from their earlier decisions (as the gate does).")] = True,
    prior: Annotated[str | None, typer.Option("--prior", show_default=False, help="Prior rows every fold also "
                                              "learns from: 'shipped' (the default: heedls' own, never from this "
                                              "file's sessions), a prior file, or 'none'.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=0, help="Worker processes for the sessions' fits (same "
                                      "results; 0: one per core, up to 4, when the data is big enough to gain).")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fits' subsampling, the session bootstrap "
                                      "(intervals) and the chance ECE (ece_chance); 0 gives the documented figures.")] = 0,
) -> None:
    """Leave-one-session-out evaluation of the acceptance model (the fixed protocol, docs/acceptance.md)."""
    from heedls.server.acceptance.evaluate import (
        check_keep,
        evaluate,
        load_model,
        load_prior,
        not_jsonl,
        read_events,
    )

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        check_keep(keep)
    except ValueError as exc:
        _fail(f"--keep: {exc}")
    if model_file is not None and not pretrained:
        typer.echo("heedls: --model-file is ignored without --pretrained (the model is refitted in each fold)",
                   err=True)
    if pretrained and prior is not None:
        typer.echo("heedls: --prior is ignored with --pretrained (nothing is fitted)", err=True)
    prior = prior or "shipped"
    if not events.exists():
        _fail(f"{events}: no such file")
    if events.is_dir():
        _fail(f"{events}: not a file")
    try:
        size = events.stat().st_size
    except OSError:
        size = 0
    if size > _BIG_FILE_BYTES:  # ~1 minute per 300 MB, before the progress bar can start
        typer.echo(f"eval: reading {events} ({size / 1e6:,.0f} MB)", err=True)
    try:
        read = read_events(events)
    except OSError as exc:
        _fail(f"{events}: cannot read: {exc.strerror or exc}")
    loaded, skipped = read.events, read.skipped
    if not loaded:
        why = (f"all {skipped} non-blank line(s) are malformed; the first, {read.first_reason}" if skipped
               else "the file is empty (no non-blank line)")
        # a CSV or Parquet export is refused as well, but saying so, not "line 1: not JSON"
        other = not_jsonl(events, "heedls eval acceptance") if skipped else None
        _fail(other or f"{events}: no event to evaluate: {why}", code=1)
    if skipped:
        typer.echo(f"heedls: {events}: skipped {skipped} malformed line(s); the first, {read.first_reason}", err=True)
    if read.repeated:
        typer.echo(f"heedls: {events}: {read.repeated} line(s) repeat an earlier event's id in the same session; the "
                   "last line of each id is its state (as in `heedls telemetry report`)", err=True)
    model = None
    if pretrained:
        from heedls.server.acceptance.gate import default_model_path

        path = model_file or default_model_path()
        try:
            model = load_model(path, stages=(stage.value,))
        except ValueError as exc:
            _fail(f"cannot load model {path}: {exc}")
        trained_on = _trained_on(model.meta, events)
        if trained_on is not None:  # cups-dev scores AUC 0.87 so, 0.76 left out session by session
            typer.echo(f"heedls: note: the model was trained on these events ({trained_on}): the figures are "
                       "in-sample, not an evaluation (without --pretrained, each session is left out of its fit)",
                       err=True)
    prior_data = None
    if not pretrained and prior != "none":
        from heedls.server.acceptance.prior import load_shipped_prior

        if prior == "shipped":
            prior_data = load_shipped_prior()
        else:
            try:
                prior_data = load_prior(prior)
            except ValueError as exc:
                _fail(f"cannot load prior {prior}: {exc}")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    # the remaining time matters: the fits grow as sessions x rows (20 sessions of 100: a minute)
    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        rows_task = bar.add_task("features", total=len(loaded))
        folds_task = bar.add_task("sessions", total=None, visible=not pretrained)
        # A live bar draws nothing where stderr is no terminal (CI, `2> log`): a 10^6-event file
        # was minutes of silence there. Lines instead, as `heedls replay` prints them.
        rows_line = _ProgressLines("features") if not console.is_terminal else None
        folds_line = _ProgressLines("sessions fitted") if not console.is_terminal else None

        def rows_done(done: int, total: int) -> None:
            bar.update(rows_task, completed=done + 1, total=total)
            if rows_line is not None:
                rows_line(done + 1, total)

        def folds_done(done: int, total: int) -> None:
            bar.update(folds_task, completed=done, total=total)
            if folds_line is not None:
                folds_line(done, total)

        result = evaluate(loaded, stage.value, label=label.value, keep=keep, kind=kind.value, baselines=baselines,
                          pretrained=model, prior=prior_data, progress=rows_done, fold_progress=folds_done,
                          adapt=user_bias, jobs=jobs, seed=seed)
    if skipped:
        result["skipped_lines"] = skipped
    unfitted = ([f"--baselines needs labelled events in two sessions (each baseline is fitted "
                 f"leave-one-session-out); this file has {result.get('sessions', 0)}: none reported"]
                if baselines and "baselines" not in result and result.get("n") else [])
    for warning in (_label_warnings(loaded, label.value, result, pretrained)
                    + _data_warnings(loaded, result, keep, label.value) + unfitted):
        typer.echo(f"heedls: {warning}", err=True)
    if not folds:
        result.pop("folds", None)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        from heedls.server.telemetry.cli import _replace_what_stdout_cannot_encode

        _replace_what_stdout_cannot_encode()  # `…`, `—` in a latin-1 or ASCII terminal: `?`, not a traceback
        _print_table(result)
    if not result.get("n"):  # nothing was evaluated: a failure, as for a file without events
        raise typer.Exit(1)


_BIG_FILE_BYTES = 64_000_000


class _ProgressLines:
    """`eval: features 300000/1000000, 12 s` on stderr at each tenth of the total (and at the end),
    for stderr that is no terminal; only once the step has run for 2 s, so that a small file
    (cups-dev's features: a fraction of a second) adds no lines."""

    QUIET_S = 2.0

    def __init__(self, what: str) -> None:
        self.what = what
        self.started = time.perf_counter()
        self.printed = False

    def __call__(self, done: int, total: int) -> None:
        step = max(1, total // 10)
        if not (done % step == 0 or done == total):
            return
        seconds = time.perf_counter() - self.started
        if seconds < self.QUIET_S and not (self.printed and done == total):
            return
        self.printed = True
        print(f"eval: {self.what} {done}/{total}, {seconds:.0f} s", file=sys.stderr, flush=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit (2: the arguments or input files are unusable)."""
    typer.echo(f"heedls: {message}", err=True)
    raise typer.Exit(code)


def _label_warnings(events: list[Any], label: str, result: dict[str, Any], pretrained: bool = False) -> list[str]:
    """Why the figures are empty or one-sided: one session (no fold to hold out), or one class of
    the label missing."""
    n, positives = int(result.get("n") or 0), int(result.get("positives") or 0)
    if n and not pretrained and result.get("sessions") == 1:  # the reason, whatever the classes
        session = next(e.session for e in events if e.label(label) is not None)
        return [f"all {n} labelled events are in one session ({session!r}): leave-one-session-out needs two, "
                "so every figure is null (--pretrained scores one session without fitting)"]
    if not events or (0 < positives < n):
        return []
    accepted = sum(1 for e in events if e.outcome == "accepted")
    if label == "persisted" and positives == 0 and accepted:
        rest = "only rejections remain" if n else "nothing remains to evaluate"
        return [f"none of the {accepted} accepted events carries a persistence check (persisted_30s/120s/600s), "
                f"so under --label persisted they are unlabelled and {rest}; use --label accepted"]
    if n == 0:
        return ["no event carries a decision (outcome accepted or rejected): nothing to evaluate"]
    # ECE is still measured with one class (the scores should then be near 1, or 0)
    if positives:
        return [f"all {n} labelled events are positive: AUC and hidden_rejected_at_95 need a rejected one"]
    return [f"all {n} labelled events are negative: AUC and accepted_kept need an accepted one"]


# A ts above this is no time in seconds (the year 5138) but likely one in milliseconds (any after 1973).
MILLISECONDS_TS = 1e11


def _data_warnings(events: list[Any], result: dict[str, Any], keep: float, label: str) -> list[str]:
    """What in the data makes the figures mean less than they seem to, though nothing failed."""
    out: list[str] = []
    stamps = sorted(e.ts for e in events)
    if stamps and stamps[len(stamps) // 2] > MILLISECONDS_TS:
        out.append(f"ts is not in unix seconds as the schema has it (median {stamps[len(stamps) // 2]:.4g}, past "
                   "the year 5000: milliseconds?); it is used as given, so the gaps between events read that many "
                   "times too long and an earlier decision (shown at ts, decided decision_ms later) as known too "
                   "soon; convert ts to seconds")
    folds = result.get("folds") or []
    # A threshold of 0.0 shows everything: what the policy does when the training data has fewer
    # accepted events than the conformal rule needs (19 at keep 0.95), unless keep 1 asked for it.
    # (A fit on one class shows everything too; the one-class note says that case.)
    from heedls.server.acceptance.policy import min_positives

    need = min_positives(keep)
    positives = Counter(e.session for e in events if e.label(label) == 1)
    total = sum(positives.values())
    empty = [f for f in folds if f.get("threshold") == 0.0 and total - positives[f.get("session")] < need]
    if empty:
        out.append(f"in {len(empty)} of the {len(folds)} held-out sessions the training data had fewer than {need} "
                   f"accepted events to set a threshold keeping {keep:g} of them, so everything was shown there; "
                   "hidden_rejected_at_95 and accepted_kept say nothing about the model for those sessions")
    return out


def _print_table(result: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = ("auc", "hidden_rejected_at_95", "accepted_kept", "ece", "requests_avoided")
    keep = result.get("keep", 0.95)
    table = Table(title=f"acceptance, {result['stage']} stage: n={result['n']} positives={result['positives']}"
                        + ("" if keep == 0.95 else f" (hidden_rejected_at_95 and accepted_kept at keep >= {keep:g})"))
    table.add_column("model", no_wrap=True)
    for key in keys:  # the JSON's keys, with spaces where an 80-column terminal may break them
        table.add_column(key.replace("_", " "), justify="right")
    rows = [("heedls", result)]
    baselines = result.get("baselines")
    if isinstance(baselines, dict):
        rows += list(baselines.items())
    for name, values in rows:
        assert isinstance(values, dict)
        table.add_row(name, *("-" if values.get(k) is None else f"{values[k]:.3f}" for k in keys))
        intervals = values.get("intervals")
        if isinstance(intervals, dict):  # how far chance alone moves each figure (sessions resampled)
            table.add_row("  90% CI", *("-" if k not in intervals else
                                        f"{intervals[k][0]:.2f}-{intervals[k][1]:.2f}" for k in keys))
    console = Console()
    console.print(table)
    chance = result.get("ece_chance")
    if isinstance(chance, dict):
        console.print(f"ECE of a perfectly calibrated model with these scores, by chance alone: {chance['mean']:.3f} "
                      f"on average, {chance['p90']:.3f} at the 90th percentile", style="dim")
    console.print(str(result.get("protocol", "")), style="dim")


def _trained_on(meta: Mapping[str, Any], events: Path) -> str | None:
    """The name of the model's training source that `events` is (the same sha256 as the training
    script records: the file's first 16 hex digits), or None."""
    digests = {str(s.get("sha256")): str(s.get("name")) for s in meta.get("sources") or [] if isinstance(s, dict)}
    if not digests:
        return None
    try:
        digest = hashlib.sha256(events.read_bytes()).hexdigest()[:16]
    except OSError:
        return None
    return digests.get(digest)


def replay_command(
    sources: Annotated[list[Path], typer.Argument(help="Files or directories of real code (not yours).")],
    output: Annotated[str, typer.Option("-o", "--output", help="Events JSONL to write (-: stdout).")],
    provider: Annotated[str, typer.Option("--provider", help="local | openai | ollama | llamacpp")] = "local",
    cuts: Annotated[int, typer.Option("--cuts", help="Number of cut points (requests).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (reproducible replays).")] = 0,
    per_file: Annotated[int, typer.Option("--per-file", help="Cut points per file.")] = 10,
    files_per_session: Annotated[int, typer.Option("--files-per-session", help="Files per synthetic session.")] = 4,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    latency: Annotated[str, typer.Option(
        "--latency", help="synthetic (drawn: the same sources and seed give the same file) | measured "
                          "(this machine's, provider + post-processing)")] = "synthetic",
) -> None:
    """Cut real files, run the provider and post-processing, label by what the author wrote next."""
    from heedls.server.acceptance.replay import (
        ALONE_FROM,
        LATENCIES,
        PROVIDERS,
        ReplayWriteError,
        find_projects,
        prepare_output,
        provider_problems,
        read_as,
        run,
    )
    from heedls.server.telemetry.cli import _output_path, _refuse_overwriting, _write_failed

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    for name, value in (("--cuts", cuts), ("--per-file", per_file), ("--files-per-session", files_per_session)):
        if value <= 0:
            _fail(f"{name} must be positive")
    if provider not in PROVIDERS:
        _fail(f"--provider: unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    if latency not in LATENCIES:
        _fail(f"--latency: {latency!r} is not one of {', '.join(LATENCIES)}")
    problems = provider_problems(provider)
    if problems:  # the replay would be the local provider's all through (an endpoint that fails later is retried)
        _fail(f"--provider {provider}: {'; '.join(problems)} (set it under [tool.heedls.provider] in the current "
              "folder's pyproject.toml)")
    target = _output_path(output, "-o")  # None: stdout, as for `heedls telemetry export`
    missing = [str(source) for source in sources if not source.exists()]
    if missing:
        _fail(f"{', '.join(missing)}: no such file or directory")
    if target is not None:
        try:  # before the replay, not after it: a replay can take many minutes
            prepare_output(target)
        except OSError as exc:
            _fail(f"cannot write {target}: {exc.strerror or exc}")
    projects = find_projects(sources)
    # Events written over a source file would destroy someone's code: export's refusal and words, given
    # only the files that are the output (read_as, a stat each: export's check over a corpus takes 1 s)
    _refuse_overwriting(target, "-o", *read_as(target, sources, projects))
    try:
        summary = run(sources, target, cuts, seed, provider, per_file, files_per_session, quiet=quiet,
                      latency=latency, projects=projects)
    except ImportError as exc:
        typer.echo(f"heedls: replay needs the provider and pipeline modules: {exc}", err=True)
        raise typer.Exit(1) from exc
    except ReplayWriteError as exc:
        where = (f"the {exc.count} events are kept in {exc.kept}" if exc.kept is not None
                 else f"the {exc.count} events could not be kept anywhere")
        if exc.output is None:  # as export says it (nothing for a reader gone away, `| head`), then where
            failed = _write_failed("<stdout>", exc.cause)
            typer.echo(f"heedls: {where}", err=True)
            raise failed from None
        _fail(f"cannot write {exc.output}: {exc.strerror}; {where}", code=1)
    typer.echo(json.dumps(summary), err=True)
    if summary.get("interrupted"):
        place = "written to stdout" if target is None else f"in {target}"
        typer.echo(f"heedls: replay interrupted: the {summary['events']} events made so far are {place}", err=True)
        raise typer.Exit(130)  # as a shell reports Ctrl-C
    if not summary["events"]:
        _fail("nothing could be replayed, nothing written: no project under the sources has a Python file of "
              "1 KB-200 KB of UTF-8 text outside tests with lines of code to cut (a project needs two files "
              "unless it is the only one)", code=1)
    if summary["events"] < cuts:
        typer.echo(f"heedls: note: only {summary['events']} of the {cuts} cuts asked could be made "
                   f"({summary['sessions']} session(s) of at most --files-per-session {files_per_session} files, "
                   f"--per-file {per_file} cuts per file, fewer in short files; a project gives more than one "
                   f"session only while there are fewer than {ALONE_FROM} projects, and then until its files "
                   f"are used)", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
    app.command("replay")(replay_command)
