"""Events written by the live server (show, accept, reject, persistence) → export → eval.

This is issue 4's round trip: what the editor reports ends up in the workspace's store, exports in
every format (nocode without code text), and `heedls eval acceptance` reads the export back.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types

from tests.lsp.conftest import inline_request, server_env

STUB = "total_{line} = compute_total(values)"


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heedls", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
async def test_live_events_export_and_evaluate(lsp, workspace: Path, tmp_path: Path) -> None:
    options = {"telemetry": {"persistenceTimeScale": 200}, "gate": {"mode": "off"}, "inline": {"debounceMs": 0}}
    client = await lsp(workspace, "vscode", stub=STUB, options=options)
    lines = [f"def f{i}(values):\n    \n" for i in range(6)]
    text = "".join(lines)
    path = workspace / "calc.py"
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text)))

    decided = []
    version = 1
    for i in range(6):
        line = 2 * i + 1
        result = await client.text_document_inline_completion_async(inline_request(uri, line, 4, invoked=True))
        item = result.items[0]
        sid = item.command.arguments[0]
        client.protocol.notify("heedls/suggestionShown", {"id": sid})
        if i % 2 == 0:
            await client.workspace_execute_command_async(types.ExecuteCommandParams(command="heedls.accept", arguments=[sid]))
            # the editor inserts the accepted text; it stays in the file (it persists)
            version += 1
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    types.VersionedTextDocumentIdentifier(version=version, uri=uri),
                    [types.TextDocumentContentChangePartial(range=types.Range(types.Position(line, 4), types.Position(line, 4)), text=item.insert_text)],
                )
            )
            decided.append(("accepted", item.insert_text))
        else:
            client.protocol.notify("heedls/suggestionRejected", {"id": sid, "reason": "dismissed"})
            decided.append(("rejected", item.insert_text))
    # 600 s of persistence clock at 200× is 3 s
    await asyncio.sleep(4.0)
    version += 1
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(types.VersionedTextDocumentIdentifier(version=version, uri=uri), [types.TextDocumentContentChangeWholeDocument(text=path.read_text() + "\n")])
    )
    await asyncio.sleep(0.5)
    await client.shutdown_session()
    await asyncio.sleep(0.5)

    env = server_env(tmp_path)  # the lsp fixture started the server with this same data dir
    out = _cli(["telemetry", "export", "--format", "jsonl"], workspace, env)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    outcomes = sorted(e["outcome"] for e in events if e["outcome"])
    assert outcomes == ["accepted"] * 3 + ["rejected"] * 3
    for event in events:
        assert event["schema"] == "heedls.suggestion/1"
        assert event["shown"] is True
        assert event["latency_ms"] is not None
    accepted = [e for e in events if e["outcome"] == "accepted"]
    assert all(e["persisted_30s"] is True and e["persisted_600s"] is True for e in accepted)
    assert all(e["decision_ms"] is not None for e in accepted)

    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(out.stdout)
    for fmt in ("csv", "parquet"):
        target = tmp_path / f"events.{fmt}"
        res = _cli(["telemetry", "export", "--format", fmt, "-o", str(target)], workspace, env)
        assert res.returncode == 0, res.stderr
        assert target.stat().st_size > 0
    nocode = tmp_path / "nocode.jsonl"
    res = _cli(["telemetry", "export", "--format", "jsonl", "--privacy", "nocode", "-o", str(nocode)], workspace, env)
    assert res.returncode == 0, res.stderr
    assert "compute_total" not in nocode.read_text() and "def f" not in nocode.read_text()

    evaluation = _cli(["eval", "acceptance", str(jsonl), "--stage", "suggestion", "--json"], workspace, env)
    assert evaluation.returncode == 0, evaluation.stderr
    report = json.loads(evaluation.stdout)
    assert report["n"] == 6 and report["positives"] == 3
