"""The real server fed JSON-RPC messages in the test's own process and event loop, without stdio:
for specs that look at its state (services, the protocol's bookkeeping) after a few messages."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from heedls.server.app import HeedlsServer, create_server
from heedls.server.providers.static import StaticProvider


class _Discard:
    """The server's output: not read by these specs."""

    def write(self, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None


class Outbox:
    """The server's output, read back as JSON messages (`server.protocol.set_writer(Outbox())`)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self.messages.append(json.loads(data.split(b"\r\n\r\n", 1)[1]))

    def close(self) -> None:
        return None

    def requests(self, method: str) -> list[dict[str, Any]]:
        """The server's requests to the client of `method`."""
        return [m for m in self.messages if m.get("method") == method and "id" in m]

    def published(self) -> list[dict[str, Any]]:
        """The params of each textDocument/publishDiagnostics."""
        return [m["params"] for m in self.messages if m.get("method") == "textDocument/publishDiagnostics"]


class InProcessServer:
    """`create_server` with a static provider and its data and cache directories under `tmp_path`."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HEEDLS_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("HEEDLS_CACHE_DIR", str(tmp_path / "cache"))
        self.server: HeedlsServer = create_server(provider=StaticProvider("pass"))
        self.protocol = self.server.protocol
        self.protocol.set_writer(_Discard())
        self._ids = itertools.count(1)

    def send(self, method: str, params: Any, request: bool = False) -> None:
        """One message, as the client would send it (a request gets the next id)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            message["id"] = next(self._ids)
        self.protocol.handle_message(json.loads(json.dumps(message), object_hook=self.protocol.structure_message))
