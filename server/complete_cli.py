"""`heedls complete FILE:LINE:COL` (filled in below)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
