from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from heedls.server.app import HeedlsServer


def register(server: HeedlsServer) -> None:
    return None
