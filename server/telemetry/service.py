"""Glue for the live server: open the workspace's store as configured, warnings to the editor.

The server owns the objects (`server.services["telemetry"]`); this only builds them the same way
every time, so `heedls serve` and `heedls telemetry …` agree on the path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from heedls.server.config import TelemetryConfig
from heedls.server.handoff import from_any_thread
from heedls.server.telemetry.paths import store_path
from heedls.server.telemetry.store import TelemetryStore


def open_store(
    workspace: Path | None,
    config: TelemetryConfig,
    notify: Callable[[str], None] | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> TelemetryStore | None:
    """The store for `workspace` (cwd when None), or None when telemetry is turned off.

    `notify` (e.g. `server.notify_log`) receives the store's warnings; they are raised on the
    writer thread, so with `loop` given they are handed to that loop with call_soon_threadsafe.
    `config.privacy == "nocode"` keeps code out of the store itself (lengths are stored instead).
    Never raises: opening happens on the writer thread and failures become warnings.
    """
    if not config.enabled:
        return None
    root = workspace if workspace is not None else Path.cwd()
    on_warning = from_any_thread(notify, loop) if notify is not None and loop is not None else notify
    return TelemetryStore(store_path(root, config), on_warning=on_warning, privacy=config.privacy,
                          max_size_mb=config.max_size_mb)
