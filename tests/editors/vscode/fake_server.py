"""A stand-in language server for the hostile VS Code tests: it does what a broken or odd heedls
server might (exit at once, hang at initialize, answer heedls/status with odd values) and writes
every message it gets to a log, one JSON object a line, so the tests can see what the extension
told it. Usage: python fake_server.py MODE LOG   (MODE: ok, crash, hang)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

MODE, LOG = sys.argv[1], sys.argv[2]

# Odd values a buggy or future server could send in heedls/status.
ODD_STATUS = {
    "enabled": True,
    "provider": "local`**x**",
    "gate": {"mode": "cascade", "requests": -5, "skipped": 1e308, "hidden": "many", "hidden_share": -3.5},
}


def record(entry: dict[str, Any]) -> None:
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps({"pid": os.getpid(), "mode": MODE, "t": time.time(), **entry}) + "\n")


def read() -> dict[str, Any] | None:
    length = 0
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    message: dict[str, Any] = json.loads(sys.stdin.buffer.read(length))
    return message


def send(message: dict[str, Any]) -> None:
    body = json.dumps({"jsonrpc": "2.0", **message}).encode()
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    sys.stdout.buffer.flush()


record({"started": True})
if MODE == "crash":
    print("fake heedls: ImportError: no module named 'heedls.fake' (exiting with 1)", file=sys.stderr)
    sys.exit(1)

enabled = True
while True:
    msg = read()
    if msg is None:
        record({"eof": True})
        sys.exit(0)
    method = msg.get("method")
    record({"method": method, "params": msg.get("params")})
    if method == "initialize":
        inline = ((msg.get("params") or {}).get("initializationOptions") or {}).get("inline") or {}
        if isinstance(inline.get("enabled"), bool):
            enabled = inline["enabled"]
        if MODE == "hang":
            continue  # never answers
        send({"id": msg["id"], "result": {"capabilities": {
            "textDocumentSync": 1,
            "executeCommandProvider": {"commands": ["heedls.accept", "heedls.toggleSuggestions"]},
        }, "serverInfo": {"name": "fake-heedls"}}})
    elif method == "shutdown":
        send({"id": msg["id"], "result": None})
    elif method == "exit":
        sys.exit(0)
    elif method in ("heedls/explain", "heedls/fix"):
        continue  # never answers: a request still in flight when the server goes
    elif method == "heedls/status":
        send({"id": msg["id"], "result": {**ODD_STATUS, "enabled": enabled}})
    elif method == "workspace/executeCommand":
        params = msg.get("params") or {}
        if params.get("command") == "heedls.toggleSuggestions":
            args = params.get("arguments") or []
            enabled = bool(args[0]) if args else not enabled
            send({"id": msg["id"], "result": {"enabled": enabled}})
        else:
            send({"id": msg["id"], "result": None})
    elif "id" in msg and method is not None:
        send({"id": msg["id"], "result": None})
