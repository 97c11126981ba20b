"""Builds the long-lived objects the server features share (engine, provider, gate, telemetry).

Everything optional degrades: a provider that cannot be built falls back to `local`, a gate model
that cannot be loaded to the pass-through gate, a telemetry store that cannot be opened to none.
Each failure is reported once through `warn`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from heedls.server.config import HeedlsConfig, TelemetryConfig
from heedls.server.handoff import from_any_thread
from heedls.server.pipeline.cache import SuggestionCache
from heedls.server.pipeline.engine import EventSink, SuggestionEngine
from heedls.server.pipeline.gate import Gate, PassThroughGate
from heedls.server.providers.base import Provider

if TYPE_CHECKING:
    from heedls.server.telemetry.folders import FolderStores

log = logging.getLogger(__name__)
Warn = Callable[[str], None]


def cache_dir() -> Path:
    override = os.environ.get("HEEDLS_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("heedls"))


def data_dir() -> Path:
    override = os.environ.get("HEEDLS_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir("heedls"))


def build_local(root: Path | None) -> Provider:
    from heedls.server.providers.local import LocalProvider

    return LocalProvider(root, cache_dir=cache_dir() / "index")


def build_provider(config: HeedlsConfig, local: Provider, warn: Warn) -> Provider:
    if config.provider.name == "local":
        return local
    try:
        from heedls.server.providers.registry import build_provider as registry_build

        return registry_build(config.provider, local, on_warning=warn)
    except Exception as exc:
        warn(f"provider {config.provider.name!r} unavailable ({exc}); using local")
        return local


def build_gate(config: HeedlsConfig, warn: Warn) -> Gate:
    if config.gate.mode == "off":
        return PassThroughGate()
    try:
        from heedls.server.acceptance.gate import build_gate as acceptance_gate

        # Telemetry off means heedls writes nothing about the user's suggestions: the gate then
        # learns within the session only (no stored rows, no refitted model read or saved).
        learn_dir = data_dir() if config.telemetry.enabled else None
        gate: Gate = acceptance_gate(config.gate, learn_dir, warn=from_any_thread(warn))
        return gate
    except Exception as exc:
        warn(f"acceptance gate unavailable ({exc}); showing every suggestion")
        return PassThroughGate()


def open_telemetry(config: HeedlsConfig, root: Path | None, folders: Mapping[Path, HeedlsConfig], warn: Warn,
                   store: Any = None, on_late: Callable[[], None] | None = None) -> FolderStores:
    """The event sink: the store of each workspace folder (`folders`, the server's folder_configs),
    the start-up folder `root`'s (opened now, or `store` when given) for documents in no folder.
    Opening a store never raises: a failure is one warning, and that store's events are dropped.
    `on_late`: a removed folder's store opened again for a late update (FolderStores)."""
    import asyncio

    from heedls.server.telemetry.folders import FolderStores
    from heedls.server.telemetry.service import open_store

    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def opener(base: Path | None, telemetry: TelemetryConfig) -> Any:
        # The store warns from its writer thread; open_store hands warnings to the loop thread.
        return open_store(base, telemetry, warn, loop)

    sink = FolderStores(opener, root, config.telemetry, store=store, warn=warn, on_late=on_late)
    sink.configure(config.telemetry, {folder: each.telemetry for folder, each in folders.items()})
    return sink


def build_engine(
    config: HeedlsConfig,
    root: Path | None,
    warn: Warn,
    *,
    provider: Provider | None = None,
    sink: EventSink | None = None,
    gate: Gate | None = None,
    disk_cache: bool | None = None,
    folder_of: Callable[[Path], Path | None] | None = None,
) -> SuggestionEngine:
    """`folder_of`: the workspace folder holding a (resolved) path, if any: an event's `file` is
    relative to it (the folder whose store keeps the event), else to `root`, else the file name."""
    use_disk = config.inline.disk_cache if disk_cache is None else disk_cache
    cache = SuggestionCache(
        config.inline.cache_entries,
        cache_dir() / "suggestions" if use_disk else None,
        config.inline.disk_cache_mb,
    )

    resolved_root = root.resolve() if root is not None else None

    # Called for every request: resolving a path touches the filesystem, so remember the answer
    # (until the folders change: `file_label.cache_clear()`).
    @functools.lru_cache(maxsize=1024)
    def label(path: str) -> str:
        resolved_path = Path(path).resolve()
        folder = folder_of(resolved_path) if folder_of is not None else None
        for base in (folder, resolved_root):
            if base is not None:
                try:
                    return str(resolved_path.relative_to(base))
                except ValueError:
                    pass
        return os.path.basename(path)

    if provider is None:
        provider = build_provider(config, build_local(root), warn)
    return SuggestionEngine(
        provider,
        config,
        gate=gate if gate is not None else build_gate(config, warn),
        sink=sink,
        cache=cache,
        file_label=label,
    )
