"""Where a workspace's telemetry store lives.

One store per workspace, in the user's data directory (never inside the project, so it is not
committed by accident): `<data>/workspaces/<sha256 of the resolved workspace path>[:16]/events.sqlite3`.
`<data>` is `$HEEDLS_DATA_DIR` when set (tests, sandboxes, CI), else platformdirs' `user_data_dir("heedls")`.
`[tool.heedls.telemetry] path` overrides the whole thing (`~` and `$VARIABLES` expanded, relative paths
taken from the workspace).

`heedls serve` started in a directory and `heedls telemetry …` run in the same directory resolve the
same path, because both hash the same resolved workspace path.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import platformdirs
from heedls.server.config import TelemetryConfig

log = logging.getLogger(__name__)

DATA_DIR_ENV = "HEEDLS_DATA_DIR"
STORE_NAME = "events.sqlite3"


def data_dir() -> Path:
    override = os.environ.get(DATA_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("heedls", appauthor=False))


def workspace_key(workspace: Path) -> str:
    """A stable, non-reversible name for a workspace directory (the path itself is not stored)."""
    resolved = str(Path(workspace).expanduser().resolve())
    return hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def default_store_path(workspace: Path) -> Path:
    return data_dir() / "workspaces" / workspace_key(workspace) / STORE_NAME


def store_path(workspace: Path, config: TelemetryConfig | None = None) -> Path:
    """The configured store path if any (relative to the workspace), else the default."""
    configured = (config.path if config is not None else "").strip()
    if configured:
        expanded = os.path.expandvars(configured)  # $HOME/…, ${XDG_DATA_HOME}/…
        if "$" in expanded:  # a variable that is not set: never a folder named "$VAR" in the project
            log.warning("telemetry.path %r names an unset environment variable; using the default store", configured)
            return default_store_path(workspace)
        path = Path(expanded).expanduser()
        if not path.is_absolute():
            path = Path(workspace) / path
        return path
    return default_store_path(workspace)
