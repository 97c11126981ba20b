"""The `heedls` command line. Subcommand groups live beside the code they drive and register here.

Contract (DESIGN.md): `--json` prints exactly one JSON object on stdout; progress and logs go to
stderr; `complete` prints only the suggestion text.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Optional

import typer

from heedls import __version__

app = typer.Typer(
    name="heedls",
    help="Inline suggestions, explained errors and test-validated fixes for Python.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules that add commands: each defines register(app: typer.Typer).
COMMAND_MODULES = [
    "heedls.server.complete_cli",
    "heedls.server.cli_check",
    "heedls.server.cli_fix",
    "heedls.server.acceptance.cli",
    "heedls.server.telemetry.cli",
    "heedls.server.bench.cli",
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"heedls {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """heedls — a Python language server you can trust."""


@app.command()
def serve(
    tcp: Annotated[Optional[str], typer.Option("--tcp", metavar="HOST:PORT", help="Listen on TCP instead of stdio.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="error|warning|info|debug (stderr)")] = "warning",
    stdio: Annotated[bool, typer.Option("--stdio", help="Use stdio (the default; accepted for clients that always pass it).")] = False,
    stub_provider: Annotated[Optional[str], typer.Option("--stub-provider", hidden=True, help="Answer every request with this text (tests, benchmarks).")] = None,
) -> None:
    """Run the language server (stdio by default)."""
    import os

    from heedls.server.app import configure_logging, create_server

    # HEEDLS_LOG_LEVEL lets editors and tests turn on debug logging without changing the command
    configure_logging(os.environ.get("HEEDLS_LOG_LEVEL", log_level).upper())
    seeded = {}
    if stub_provider is not None:
        from heedls.server.providers.static import StaticProvider

        seeded["provider"] = StaticProvider(stub_provider)
    server = create_server(**seeded)
    from heedls.server.collector import settle

    settle()  # what start-up loaded out of the collector's reach, young collections less often
    import signal

    from heedls.analyzers.proc import kill_running

    def on_term(signum: int, _frame: object) -> None:
        # An editor that gives up waiting for shutdown sends SIGTERM: the test runs go with us (each
        # is a session of its own, out of the signal's reach), and what the telemetry queue holds is
        # written (its atexit hook) before we go. Not through SystemExit: pygls' shutdown would wait
        # for its stdin reader, which the editor may never close.
        import atexit

        kill_running()
        try:
            atexit._run_exitfuncs()
        finally:
            os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    if tcp:
        host, _, port = tcp.rpartition(":")
        if not port.isdigit():
            typer.echo(f"heedls: --tcp expects HOST:PORT, got {tcp!r}", err=True)
            raise typer.Exit(2)
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        from heedls.server.framing import LenientFrames

        server.start_io(stdin=LenientFrames(sys.stdin.buffer))  # type: ignore[arg-type]
    kill_running()
    # LSP: `exit` after `shutdown` is 0, anything else (no shutdown, the client gone) 1
    raise typer.Exit(0 if getattr(server.protocol, "_shutdown", False) else 1)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
