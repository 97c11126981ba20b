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

    level = log_level.strip().upper()
    if level not in LOG_LEVELS:
        typer.echo(f"heedls: --log-level expects one of {', '.join(n.lower() for n in LOG_LEVELS)}, "
                   f"got {log_level!r}", err=True)
        raise typer.Exit(2)
    address = _tcp_address(tcp) if tcp else None
    from heedls.server.app import configure_logging, create_server

    # HEEDLS_LOG_LEVEL lets editors and tests turn on debug logging without changing the command
    wanted = os.environ.get("HEEDLS_LOG_LEVEL", "").strip().upper()
    if wanted and wanted not in LOG_LEVELS:
        typer.echo(f"heedls: HEEDLS_LOG_LEVEL={wanted.lower()!r} is not a level "
                   f"({', '.join(n.lower() for n in LOG_LEVELS)}); using {level.lower()}", err=True)
    configure_logging(wanted if wanted in LOG_LEVELS else level)
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
    if address is not None:
        server.start_tcp(*address)
    else:
        from heedls.server.framing import LenientFrames

        server.start_io(stdin=LenientFrames(sys.stdin.buffer))  # type: ignore[arg-type]
    kill_running()
    # LSP: `exit` after `shutdown` is 0, anything else (no shutdown, the client gone) 1
    raise typer.Exit(0 if getattr(server.protocol, "_shutdown", False) else 1)


LOG_LEVELS = ("ERROR", "WARNING", "INFO", "DEBUG")


def _tcp_address(value: str) -> tuple[str, int]:
    """(host, port) of `--tcp HOST:PORT` (`[::1]:2087` for IPv6; no host: 127.0.0.1), checked by
    binding it once: a bad port, an unknown host or an address in use is one line and exit 2,
    before the server starts (asyncio's traceback otherwise)."""
    import socket

    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = host or "127.0.0.1"
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        typer.echo(f"heedls: --tcp expects HOST:PORT with a port of 1-65535, got {value!r}", err=True)
        raise typer.Exit(2)
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
            probe.bind(where)
    except (OSError, UnicodeError) as exc:  # gaierror is an OSError; an IDNA failure a UnicodeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        typer.echo(f"heedls: cannot listen on {value}: {reason}", err=True)
        raise typer.Exit(2) from None
    return host, int(port)


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
