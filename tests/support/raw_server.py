"""`heedls serve` over stdio driven by hand-written JSON-RPC frames: for what a protocol client
library will not send (malformed bodies, wrong lengths, odd URIs) and for a server started in a
chosen working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.framing import read_body


class RawServer:
    def __init__(self, tmp: Path, cwd: Path | None = None) -> None:
        self.tmp = tmp / "tmp"  # the server's temp folder: what it leaves there is seen
        self.tmp.mkdir(exist_ok=True)
        env = dict(os.environ, HEEDLS_DATA_DIR=str(tmp / "data"), HEEDLS_CACHE_DIR=str(tmp / "cache"),
                   TMPDIR=str(self.tmp), PYTHONPATH=os.pathsep.join(sys.path))
        self.stderr_path = tmp / "server.stderr"
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen([sys.executable, "-m", "heedls", "serve", "--stub-provider", "print('ok')"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd)
        self.responses: dict[Any, Any] = {}
        self.shown: list[dict[str, Any]] = []  # window/showMessage: pop-ups in the editor
        self.published: list[dict[str, Any]] = []  # textDocument/publishDiagnostics
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while (body := read_body(out)) is not None:
            try:
                message = json.loads(body)
            except ValueError:
                continue
            with self._lock:
                if "id" in message and "method" not in message:
                    self.responses[message["id"]] = message
                elif message.get("method") == "window/showMessage":
                    self.shown.append(message.get("params") or {})
                elif message.get("method") == "textDocument/publishDiagnostics":
                    self.published.append(message["params"])

    def raw(self, body: bytes, length: int | None = None) -> None:
        assert self.proc.stdin is not None
        header = f"Content-Length: {len(body) if length is None else length}\r\n\r\n".encode()
        self.proc.stdin.write(header + body)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.raw(json.dumps({"jsonrpc": "2.0", **message}).encode())

    def wait(self, msg_id: Any, timeout: float = 20.0) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if msg_id in self.responses:
                    return self.responses[msg_id]
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise AssertionError(f"no response to {msg_id}")

    def request(self, msg_id: Any, method: str, params: Any, timeout: float = 60.0) -> Any:
        self.send({"id": msg_id, "method": method, "params": params})
        return self.wait(msg_id, timeout)

    def initialize(self, root: Path) -> None:
        self.send({"id": "init", "method": "initialize", "params": {"processId": None, "rootUri": root.as_uri(), "capabilities": {"textDocument": {"inlineCompletion": {}}}}})
        assert "result" in self.wait("init")
        self.send({"method": "initialized", "params": {}})

    def open(self, uri: str, text: str) -> None:
        self.send({"method": "textDocument/didOpen", "params": {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}})

    def inline(self, msg_id: Any, uri: str, line: int, character: int) -> Any:
        self.send({"id": msg_id, "method": "textDocument/inlineCompletion", "params": {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}, "context": {"triggerKind": 1}}})
        return self.wait(msg_id)

    def diagnostics(self, uri: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The diagnostics last published for `uri`, once there are some."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                found = [p["diagnostics"] for p in self.published if p["uri"] == uri and p["diagnostics"]]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no diagnostics for {uri}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        try:
            self.send({"id": "bye", "method": "shutdown"})
            self.wait("bye", 10)
            self.send({"method": "exit"})
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait(10)
