"""`heedls telemetry path|export|report|push` — run in a workspace, they read the store that
`heedls serve` writes when started there (or `--store PATH`). Readers open the database read-only:
they never create, repair or lock the live store.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer
from heedls.server import config as config_mod
from heedls.server.config import HeedlsConfig, TelemetryConfig
from heedls.server.telemetry.export import Skipped
from heedls.server.words import counted

telemetry = typer.Typer(
    name="telemetry",
    help="Acceptance telemetry: where it is stored, export, report, push.",
    no_args_is_help=True,
    add_completion=False,
)

# The option's default is the setting's, which is what decides whether code leaves the machine
_PRIVACY_DEFAULT = f"(default: the telemetry.privacy setting, {TelemetryConfig().privacy})"

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Store file (default: this workspace's store, as heedls telemetry path prints it).",
    ),
]


def _err(message: str) -> None:
    typer.echo(f"heedls: {message}", err=True)


def _workspace() -> Path:
    """The workspace a command is run in: the current folder, or the nearest one above it whose
    pyproject.toml has [tool.heedls] or that heedls has recorded telemetry for. Run from `src/pkg`
    of a project, the command read no settings (a `privacy = "nocode"` export came out with code)
    and looked for a store that does not exist; ruff and pytest too find their settings above."""
    from heedls.server.telemetry.paths import default_store_path

    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if config_mod.read_pyproject(folder) != ({}, []) or default_store_path(folder).exists():
            return folder
    return cwd


def _config() -> HeedlsConfig:
    workspace = _workspace()
    if workspace != Path.cwd():
        _err(f"note: the workspace is {workspace} (the nearest folder above with [tool.heedls] or telemetry)")
    cfg, warnings = config_mod.load(workspace)
    for warning in warnings:
        _err(f"configuration: {warning}")
    return cfg


def _store(explicit: Path | None, cfg: HeedlsConfig) -> Path:
    from heedls.server.telemetry.paths import store_path

    return explicit if explicit is not None else store_path(_workspace(), cfg.telemetry)


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    if not value.strip():  # `--since ""` (an unset shell variable) is no "everything"
        _err("--since needs a time: 7d, 12h, 30m or an ISO date/time")
        raise typer.Exit(2)
    from heedls.server.telemetry.export import parse_since

    try:
        return float(parse_since(value))
    except ValueError as exc:
        _err(str(exc))
        raise typer.Exit(2) from None


def _require_store(path: Path, nothing: str) -> tuple[int, float | None]:
    """A store that does not exist (nothing recorded yet in this workspace, or a wrong --store) is a
    failure of the command: a message on stderr and exit 1, as for export. Stores the server set
    aside beside it (corrupt, or locked by another program for too long) are named: their events
    are not in this one; and so are the suggestions its size cap removed, which it returns
    (`store.read_trimmed`)."""
    if not path.exists():
        _err(f"no telemetry recorded yet at {path}; {nothing}")
        raise typer.Exit(1)
    _refuse_a_special_file(path)
    aside = sorted(p.name for p in path.parent.glob(f"{path.name}.corrupt-*") if not p.name.endswith("-wal"))
    if aside:
        _err(f"note: {len(aside)} earlier store(s) were set aside next to {path.name} ({', '.join(aside[-3:])}"
             f"{', …' if len(aside) > 3 else ''}): their events are not included; read one with --store")
    from heedls.server.telemetry.retention import trimmed_phrase
    from heedls.server.telemetry.store import read_trimmed

    count, up_to = read_trimmed(path)
    if count:
        _err(f"note: {trimmed_phrase(count, up_to)} were removed from this store by its size cap "
             "(telemetry.max_size_mb): they are not included")
    return count, up_to


def _refuse_a_special_file(path: Path) -> None:
    """Exit 1 when the store named is a folder, a pipe or a device: SQLite waited forever for a
    writer to open a FIFO (export and report hung until 2026-12-03) and called a folder a "disk
    I/O error"."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # gone meanwhile, or unreadable: SQLite's own error says which
    if stat.S_ISREG(mode):
        return
    kind = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "not a regular file"
    _err(f"cannot read {path}: {kind}, not a telemetry store (a SQLite file: heedls telemetry path prints "
         "this workspace's)")
    raise typer.Exit(1)


def _reason(exc: OSError) -> str:
    """The OS's words for a failed write (pyarrow's errors carry the errno only in their text, next
    to the temporary file's name, which is not the user's business)."""
    found = re.search(r"\[errno (\d+)\]", str(exc))
    if found:
        return os.strerror(int(found.group(1)))
    return str(exc.strerror or exc)


def _write_failed(target: str, exc: OSError) -> typer.Exit:
    """Say that `target` could not be written (no traceback) and give the exit to raise: 1. A reader
    that went away (`| head`) is not worth a message."""
    if not (target == "<stdout>" and isinstance(exc, BrokenPipeError)):
        _err(f"cannot write {target}: {_reason(exc)}")
    if target == "<stdout>":
        # What is still buffered for stdout cannot be written either: drop it, so that the
        # interpreter does not fail again (and print a traceback) when it flushes at exit.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
    return typer.Exit(1)


def _output_path(value: str | None, option: str) -> Path | None:
    """The file an option names; None for stdout (no option, or `-`). Exit 2 for an empty name."""
    if value is None or value == "-":
        return None
    if not value.strip():
        _err(f"{option} needs a file name (or - for stdout)")
        raise typer.Exit(2)
    return Path(value)


def _refuse_overwriting(target: Path | None, option: str, *sources: Path) -> None:
    """Exit 2 when `target` is one of the files read (the store, its WAL and shared-memory files,
    or --events): writing it would destroy what is being read."""
    if target is None:
        return
    for source in sources:
        for path in (source, source.with_name(source.name + "-wal"), source.with_name(source.name + "-shm")):
            try:
                same = target.exists() and path.exists() and os.path.samefile(target, path)
            except OSError:
                same = False
            if same or target.resolve() == path.resolve():
                _err(f"{option} {target} is the file being read ({source}): choose another output file")
                raise typer.Exit(2)


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stdout is no terminal
        return False


def _have_pyarrow() -> bool:
    """Whether Parquet can be written: pyarrow is a dependency, but a trimmed or broken install
    (a platform without its wheels) may lack it."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def _write_json_line(text: str) -> None:
    """One JSON object on stdout, in UTF-8 (JSON's encoding) whatever the locale's: a stored name
    in Cyrillic was a UnicodeEncodeError traceback under `PYTHONIOENCODING=ascii` or cp1252."""
    from heedls.server.telemetry.export import _utf8_stdout

    with _utf8_stdout() as out:
        out.write(text + "\n")


def _replace_what_stdout_cannot_encode() -> None:
    """The tables are for reading: in a terminal or pipe whose encoding lacks a character (`→`,
    `—`, a stored name; `LANG=…ISO-8859-1`, Windows' cp1252 when redirected) print `?` for it, as
    a traceback half way through the tables did until 2026-12-03."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="replace")
        except (ValueError, OSError):
            pass


def _warn_skipped(skipped: Skipped, source: Path | str) -> None:
    message = skipped.message(source)
    if message:
        _err(message)


@telemetry.command("path")
def path_cmd(store: StoreOpt = None) -> None:
    """Print where this workspace's events are stored."""
    typer.echo(str(_store(store, _config())))


@telemetry.command("export")
def export_cmd(
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl | csv | parquet")] = "jsonl",
    privacy: Annotated[
        str | None,
        typer.Option("--privacy", help=f"full | nocode (no code text; lengths instead) {_PRIVACY_DEFAULT}"),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="7d, 12h, 30m or an ISO date/time")] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Output file (default, or -: stdout)")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Export the latest state of every suggestion (JSONL is exactly the heedls.suggestion/1 schema)."""
    from heedls.server.telemetry.export import FORMATS, PRIVACY_LEVELS, export_store

    cfg = _config()
    level = privacy or cfg.telemetry.privacy
    if fmt not in FORMATS:
        _err(f"--format must be one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if level not in PRIVACY_LEVELS:
        _err(f"--privacy must be one of {', '.join(PRIVACY_LEVELS)}")
        raise typer.Exit(2)
    if fmt == "parquet" and not _have_pyarrow():
        # a traceback (ModuleNotFoundError) after the store was opened, until 2026-12-03
        _err("--format parquet needs pyarrow, which cannot be imported here (pip install pyarrow); "
             "--format jsonl or csv need nothing more")
        raise typer.Exit(2)
    target = _output_path(output, "-o")
    if fmt == "parquet" and target is None and _stdout_is_terminal():
        # -o is optional for every format (DESIGN.md): Parquet goes to a redirected stdout, as
        # gzip's output does, and only a terminal is refused.
        _err("Parquet is binary: redirect stdout to a file or give -o FILE")
        raise typer.Exit(2)
    cutoff = _since(since)
    path = _store(store, cfg)
    _refuse_overwriting(target, "-o", path)
    # Nothing to export is a failure of the export: no file is written (an earlier one at -o
    # stays as it was) and scripts see the exit status.
    _require_store(path, "nothing exported")
    skipped = Skipped()
    try:
        count = export_store(path, fmt, level, target, cutoff, skipped)  # type: ignore[arg-type,unused-ignore]
    except sqlite3.Error as exc:
        _err(f"cannot read {path}: {exc}")
        raise typer.Exit(1) from None
    except OSError as exc:
        raise _write_failed(str(target) if target is not None else "<stdout>", exc) from None
    except KeyboardInterrupt:
        # A file at -o is replaced only by a complete export; stdout (a shell's `> file`) has whole
        # lines up to where it stopped, which would pass for the whole store: say so.
        _err("export interrupted: " + (f"{target} is left as it was" if target is not None
                                       else "what was written to stdout is incomplete"))
        raise typer.Exit(130) from None
    _warn_skipped(skipped, path)
    _err(f"exported {count} events ({fmt}, {level})" + (f" to {target}" if target is not None else ""))


@telemetry.command("report")
def report_cmd(
    html: Annotated[
        str | None,
        typer.Option("--html", help="Also write a self-contained HTML page"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object")] = False,
    since: Annotated[str | None, typer.Option("--since", help="7d, 12h, 30m or an ISO date/time")] = None,
    events_file: Annotated[
        Path | None,
        typer.Option("--events", help="Report on a heedls.suggestion/1 JSONL file instead of the store"),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Acceptance, persistence, gate effect and latency, by day, provider and file type."""
    from heedls.server.telemetry.export import number, read_store
    from heedls.server.telemetry.report import (
        compute_report,
        latest_snapshots,
        read_events_file,
        render_terminal,
        report_json,
        write_html,
    )

    page = None
    if html is not None:
        if html == "-" or not html.strip():
            _err("--html needs a file name")
            raise typer.Exit(2)
        page = Path(html)
    if events_file is not None and store is not None:  # the store was read no further, silently
        _err("--store and --events each name what to report on: give one")
        raise typer.Exit(2)
    cutoff = _since(since)
    path = events_file if events_file is not None else _store(store, _config())  # what is read
    _refuse_overwriting(page, "--html", path)
    if events_file is not None:
        skipped = Skipped("line")
        try:
            # The latest snapshot of each id, as from the store (an accumulation of push payloads or
            # of a store's raw rows repeats ids); --since then applies to that snapshot's ts.
            snapshots = list(latest_snapshots(read_events_file(events_file, skipped)))
            report = compute_report(
                d for d in snapshots
                if cutoff is None or ((ts := number(d.get("ts"))) is not None and ts >= cutoff)
            )  # fmt: skip
        except (OSError, ValueError) as exc:
            _err(f"cannot read {events_file}: {exc}")
            raise typer.Exit(1) from None
        if not snapshots and skipped.count:  # a CSV or Parquet export: say so, not "line 1: not JSON"
            from heedls.server.acceptance.evaluate import not_jsonl

            other = not_jsonl(events_file, "heedls telemetry report --events")
            if other is not None:
                _err(other)
                raise typer.Exit(1)
        _warn_skipped(skipped, events_file)
        if not snapshots:  # as for a store with nothing recorded: no report of zeros, no page
            _err(f"no event in {events_file}; nothing to report")
            raise typer.Exit(1)
        report["store"] = str(events_file)
    else:
        count, up_to = _require_store(path, "nothing to report")
        skipped = Skipped()
        try:
            report = compute_report(row.data for row in read_store(path, cutoff, skipped))
        except sqlite3.Error as exc:
            _err(f"cannot read {path}: {exc}")
            raise typer.Exit(1) from None
        _warn_skipped(skipped, path)
        if cutoff is None and not report["total"]["requests"]:
            # a store with no suggestion (telemetry on, nothing asked yet): as a missing one, no
            # report of zeros and no page; with --since, an empty window is a report of zeros
            _err(f"no suggestion recorded yet in {path}; nothing to report")
            raise typer.Exit(1)
        report["store"] = str(path)
        if count:  # said on the page too: a report read later must not pass for the whole history
            report["trimmed"] = {"suggestions": count, "up_to_ts": up_to}
    if page is not None:
        try:
            write_html(report, page)
        except OSError as exc:
            raise _write_failed(str(page), exc) from None
        _err(f"wrote {page}")
    try:
        if as_json:
            _write_json_line(report_json(report))
            return
        from rich.console import Console

        _replace_what_stdout_cannot_encode()
        render_terminal(report, Console())
        sys.stdout.flush()
    except OSError as exc:
        raise _write_failed("<stdout>", exc) from None


@telemetry.command("push")
def push_cmd(
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="URL (default: telemetry.push_endpoint)"),
    ] = None,
    privacy: Annotated[str | None, typer.Option("--privacy", help=f"full | nocode {_PRIVACY_DEFAULT}")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object")] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Store rows per POST (halved automatically while the endpoint answers 413)",
        ),
    ] = 500,
    store: StoreOpt = None,
) -> None:
    """Send the events recorded since the last push to a team endpoint (batched JSON POST, retried)."""
    from heedls.server.telemetry.export import dumps
    from heedls.server.telemetry.push import push

    cfg = _config()
    url = endpoint or cfg.telemetry.push_endpoint
    level = privacy or cfg.telemetry.privacy
    if level not in ("full", "nocode"):
        _err("--privacy must be full or nocode")
        raise typer.Exit(2)
    path = _store(store, cfg)
    # The token goes only where the user said to send it (--endpoint): a repository's pyproject.toml
    # could otherwise name any host and collect it.
    from heedls.server.telemetry.push import TOKEN_ENV

    send_token = endpoint is not None
    if not send_token and os.environ.get(TOKEN_ENV):
        _err(f"{TOKEN_ENV} is not sent to {url}: it comes from pyproject.toml, not from you; "
             f"give it with --endpoint to send the token there")
    # A missing store is push()'s error too ("no telemetry recorded yet"), printed once below.
    if path.exists():
        _refuse_a_special_file(path)
    result = push(path, url, level, batch_size=batch_size, send_token=send_token)  # type: ignore[arg-type,unused-ignore]
    _warn_skipped(result.unreadable, path)
    if result.removed_unsent:  # never silently: the endpoint will not see them
        _err(f"note: {result.removed_unsent} store rows recorded since the last push to {url} were removed by "
             "the store's size cap (telemetry.max_size_mb) before they could be sent; push more often "
             "(before the store fills a fifth of its cap) or raise the cap")
    if as_json:
        try:
            _write_json_line(dumps(result.to_dict()))
        except OSError as exc:
            raise _write_failed("<stdout>", exc) from None
    elif result.error:
        # what went through before the failure, if anything, then the error: not "pushed 0 events"
        if result.sent:
            _err(f"pushed {counted(result.sent, 'event')} in {counted(result.batches, 'batch')} to {url} before the error")
        _err(result.error)
    else:
        _err(f"pushed {counted(result.sent, 'event')} in {counted(result.batches, 'batch')} to {url}")
    if result.error:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(telemetry, name="telemetry")
