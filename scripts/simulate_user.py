#!/usr/bin/env python
"""A simulated user typing a real project's code back into `heedls serve`, as an editor drives it.

For each chosen function body of the given files (in a project directory you point it at; it is
edited in place and restored after each function): delete the body, then type it back, a key at a
time (Enter puts the next line's indentation, as an editor's auto-indent does), with a didChange
and an inlineCompletion request after each key, as VS Code does. A shown suggestion (reported with
`heedls/suggestionShown`) that is what the author wrote next is accepted (`heedls.accept`, the text
inserted) with probability `--p-accept`; one that is not is accepted by mistake with probability
`--p-wrong` and deleted again at the next key, dismissed (`heedls/suggestionRejected`) with
probability 0.3, else typed over. `--read-s` is how long the user reads a suggestion before acting
on it. After the typing, the persistence clock (30 s / 120 s / 600 s, sped up 20×) runs out, the
server is stopped, and the store is exported and compared with what the client did:

- the client's counts against the store's (shown, accepted, rejected by reason);
- persistence of true and mistaken accepts (a mistaken accept was deleted at once: not kept);
- of the suggestions that match what the author wrote next (what this user accepts), the share the
  gate showed, and of the others the share it hid, by the model that decided (shipped or the user's
  refit): the live counterpart of "accepted kept" and "rejected hidden";
- the same for stage 1 (`stage1_live`): the local provider is asked again, offline, at each
  request, the skipped ones included, and what it answers is compared with what the author wrote.

    python scripts/simulate_user.py PROJECT FILE [FILE ...] [--per-file 4] [--key-s 0.15]
        [--read-s 0.6] [--p-accept 1.0] [--p-wrong 0.0] [--seed 0] [-o DIR]

Prints one JSON object; DIR (default: a new temporary directory) keeps the data directory, the
client's log and the exported events.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

PERSISTENCE_SPEED = 20.0  # the 600 s checkpoint after 30 s


def function_bodies(text: str, n: int, rng: random.Random) -> list[tuple[int, int]]:
    """(start, end) offsets of up to n function bodies of 60-700 ASCII characters, no docstrings."""
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    found = []
    for i, line in enumerate(lines):
        code = line.lstrip()
        if not (code.startswith("def ") and line.rstrip().endswith(":")):
            continue
        indent = len(line) - len(code)
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            j += 1
        while j > i + 1 and not lines[j - 1].strip():
            j -= 1
        body = "".join(lines[i + 1 : j])
        if 60 <= len(body) <= 700 and body.isascii() and '"""' not in body and "'''" not in body:
            found.append((offsets[i + 1], offsets[j]))
    rng.shuffle(found)
    chosen: list[tuple[int, int]] = []
    for start, end in found:  # nested functions: no two overlapping bodies
        if len(chosen) < n and all(end <= a or start >= b for a, b in chosen):
            chosen.append((start, end))
    return sorted(chosen)


def position(text: str, offset: int) -> types.Position:
    before = text[:offset]
    return types.Position(before.count("\n"), offset - (before.rfind("\n") + 1))


def offset_of(text: str, pos: types.Position) -> int:
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[: pos.line]) + pos.character


class User:
    def __init__(self, args: argparse.Namespace, data: Path) -> None:
        self.args, self.data = args, data
        self.rng = random.Random(args.seed)
        self.client = LanguageClient("heedls-simulated-user", "1")
        self.log: list[dict[str, Any]] = []
        self.version = 0

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def _log(params: types.LogMessageParams) -> None:
            if params.type <= types.MessageType.Warning:
                print("server:", params.message, file=sys.stderr)

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _diagnostics(params: types.PublishDiagnosticsParams) -> None:
            return None

        @self.client.feature(types.WORKSPACE_CONFIGURATION)
        def _configuration(params: types.ConfigurationParams) -> list[None]:
            return [None for _ in params.items]

    async def start(self, root: Path) -> None:
        env = {**os.environ, "HEEDLS_DATA_DIR": str(self.data / "data"), "HEEDLS_CACHE_DIR": str(self.data / "cache")}
        await self.client.start_io(sys.executable, "-m", "heedls", "serve", env=env)
        await self.client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(inline_completion=types.InlineCompletionClientCapabilities()),
                workspace=types.WorkspaceClientCapabilities(
                    configuration=True, execute_command=types.ExecuteCommandClientCapabilities()),
            ),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(root.as_uri(), root.name)],
            initialization_options={"telemetry": {"persistenceTimeScale": PERSISTENCE_SPEED}},
        ))
        self.client.initialized(types.InitializedParams())

    def edit(self, uri: str, text: str, start: int, end: int, new: str) -> str:
        self.version += 1
        change = types.TextDocumentContentChangePartial(range=types.Range(position(text, start), position(text, end)), text=new)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(version=self.version, uri=uri), [change]))
        return text[:start] + new + text[end:]

    async def accept(self, suggestion_id: str) -> None:
        await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="heedls.accept", arguments=[suggestion_id]))

    async def type_body(self, path: Path, original: str, a: int, b: int) -> None:
        uri, target = path.as_uri(), original[a:b]
        text = original[:a] + original[b:]
        self.version += 1
        item = types.TextDocumentItem(uri, "python", self.version, text)
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(item))
        await asyncio.sleep(1.0)
        cursor, done = a, 0
        undo: tuple[int, int, str] | None = None  # a mistaken accept, deleted at the next key
        while done < len(target) or undo:
            if undo:
                start, end, restore = undo
                text, cursor, undo = self.edit(uri, text, start, end, restore), start + len(restore), None
                if done >= len(target):
                    break
            key = target[done]
            if key == "\n" or (done == 0 and key == " "):  # Enter, and the editor's auto-indent
                j = done + 1 if key == "\n" else done
                while j < len(target) and target[j] == " ":
                    j += 1
                key = target[done:j]
            text = self.edit(uri, text, cursor, cursor, key)
            cursor, done = cursor + len(key), done + len(key)
            asked = time.perf_counter()
            try:
                result = await asyncio.wait_for(self.client.text_document_inline_completion_async(types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri), position=position(text, cursor),
                    context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))), 10)
            except Exception as exc:  # a lost answer is a finding, not a reason to stop typing
                self.log.append({"kind": "error", "error": repr(exc)})
                continue
            waited = time.perf_counter() - asked
            items = result.items if isinstance(result, types.InlineCompletionList) else (result or [])
            if items and items[0].command:
                await self.react(uri, items[0], text, original, a, b, target)
                if self.log[-1]["outcome"] in ("accepted", "mistaken accept"):
                    entry = self.log[-1]
                    start, inserted = entry["at"], entry["text"]
                    text = self.edit(uri, text, start, start, inserted)
                    await self.accept(entry["id"])
                    if entry["outcome"] == "accepted":
                        cursor = start + len(inserted)
                        done = cursor - a
                    else:
                        undo = (start, start + len(inserted), "")
            await asyncio.sleep(max(0.0, self.args.key_s - waited) * self.rng.uniform(0.5, 2.0))
        if text != original:
            raise RuntimeError(f"{path}: the typed text differs from the original")
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))

    async def react(self, uri: str, item: types.InlineCompletionItem, text: str, original: str, a: int, b: int,
                    target: str) -> None:
        assert item.command and item.command.arguments
        sid = str(item.command.arguments[0])
        self.client.protocol.notify("heedls/suggestionShown", {"id": sid})
        insert = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
        at = offset_of(text, item.range.start) if item.range else None
        wanted = original[:a] + target + original[b:]
        matches = at is not None and bool(insert.strip()) and wanted[at:].startswith(insert) and wanted[:at] == text[:at]
        entry: dict[str, Any] = {"kind": "shown", "id": sid, "text": insert, "at": at, "matches": matches}
        r = self.rng.random()
        if self.args.read_s and (matches or r < 0.3):
            await asyncio.sleep(self.args.read_s * self.rng.uniform(0.5, 2.0))  # reading it before acting
        if at is not None and matches and r < self.args.p_accept:
            entry["outcome"] = "accepted"
        elif at is not None and insert and not matches and r < self.args.p_wrong:
            entry["outcome"] = "mistaken accept"
        elif not matches and r < 0.3:
            self.client.protocol.notify("heedls/suggestionRejected", {"id": sid, "reason": "dismissed"})
            entry["outcome"] = "dismissed"
        else:
            entry["outcome"] = "typed over"
        self.log.append(entry)

    async def stop(self) -> dict[str, Any]:
        status: dict[str, Any] = plain(await self.client.protocol.send_request_async("heedls/status", {}))
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await asyncio.sleep(1.0)
        await self.client.stop()
        return status


def plain(value: Any) -> Any:
    """pygls answers a custom request with named tuples: back to dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def compare(events: list[dict[str, Any]], log: list[dict[str, Any]], originals: dict[str, str], root: Path) -> dict[str, Any]:
    by_id = {e["id"]: e for e in events}
    acted: dict[str, str] = {}
    for entry in log:
        if entry["kind"] == "shown" and acted.get(entry["id"], "typed over") == "typed over":
            acted[entry["id"]] = entry["outcome"]
    stored = Counter((acted.get(i, "not shown"), e["outcome"], e.get("reason")) for i, e in by_id.items() if e["shown"])
    persisted = Counter((what, str((e["persisted_30s"], e["persisted_120s"], e["persisted_600s"])))
                        for i, what in acted.items() if what in ("accepted", "mistaken accept") for e in [by_id[i]])

    def author_next(event: dict[str, Any]) -> str | None:
        found = cursor_in_original(event, originals, root)
        return None if found is None else found[0][found[1]:]

    gate: dict[str, Counter[str]] = {}
    for event in events:
        scores = event.get("gate") or {}
        if event.get("suggestion") is None or scores.get("stage2") is None:
            continue
        truth = author_next(event)
        if truth is None:
            continue
        match = bool(event["suggestion"].strip()) and truth.startswith(event["suggestion"])
        model = model_of(event)
        gate.setdefault(model, Counter())[("matching" if match else "other") + (" shown" if event["shown"] else " hidden")] += 1
    live = {}
    for model, c in gate.items():
        matching, other = c["matching shown"] + c["matching hidden"], c["other shown"] + c["other hidden"]
        live[model] = {**c, "matching_kept": round(c["matching shown"] / matching, 3) if matching else None,
                       "others_hidden": round(c["other hidden"] / other, 3) if other else None}
    return {"client_vs_store": {" / ".join(str(x) for x in k): n for k, n in stored.most_common()},
            "persistence": {f"{k[0]} {k[1]}": n for k, n in persisted.most_common()},
            "gate_live": live}


def cursor_in_original(event: dict[str, Any], originals: dict[str, str], root: Path) -> tuple[str, int] | None:
    """(the file as the author wrote it, the request's cursor in it), found by the prefix's tail."""
    original = originals.get(str((root / event["file"]).resolve()))  # workspace-relative, or absolute
    tail = (event.get("prefix") or "")[-400:]
    at = original.find(tail) if original and tail else -1
    if at < 0 or original is None or original.find(tail, at + 1) >= 0:
        return None
    return original, at + len(tail)


def model_of(event: dict[str, Any]) -> str:
    return "user refit" if "+user" in str((event.get("gate") or {}).get("model_version")) else "shipped"


def stage1_check(events: list[dict[str, Any]], originals: dict[str, str], root: Path) -> dict[str, Any]:
    """What stage 1 cost the user: the local provider is asked again, offline, at every request of
    the run (the same document as the server had: the file as typed so far and the rest after the
    body), and a request counts as one the user would have taken when its answer is what the author
    wrote next. By the model that decided: the share of those the stage asked for, and of the others
    the share it skipped. `same_as_live`: how often the offline answer equals what the server
    answered where it asked (the check is as good as that share)."""
    from heedls.server.acceptance.replay import _make_provider
    from heedls.server.pipeline.postprocess import first_shown
    from heedls.server.providers.base import CompletionRequest

    async def run() -> dict[str, Counter[str]]:
        # the replay's local provider (its index limits, its generous time budget), indexed at once
        provider = _make_provider("local", root, Path(tempfile.mkdtemp(prefix="heedls-recheck-")))
        counts: dict[str, Counter[str]] = {}
        for event in events:
            decision = (event.get("gate") or {}).get("decision")
            found = cursor_in_original(event, originals, root)
            if decision not in ("skipped", "shown", "hidden", "empty") or found is None:
                continue
            text, cursor = found
            suffix = event.get("suffix") or ""
            after = text.find(suffix[:300], cursor) if suffix else len(text)
            if after < 0:
                continue
            line = text.count("\n", 0, cursor)
            request = CompletionRequest(prefix=event["prefix"], suffix=suffix,
                                        path=str((root / event["file"]).resolve()), line=line,
                                        character=cursor - (text.rfind("\n", 0, cursor) + 1),
                                        workspace=root, document=text[:cursor] + text[after:])
            shown = first_shown(await provider.complete(request, 1.0), request)
            answer = shown[0] if shown is not None else None
            matches = bool(answer and answer.strip()) and text[cursor:].startswith(answer or "")
            c = counts.setdefault(model_of(event), Counter())
            c[("matching " if matches else "other ") + ("skipped" if decision == "skipped" else "asked")] += 1
            if decision in ("shown", "hidden"):
                c["same as live"] += answer == event.get("suggestion")
                c["asked with an answer"] += 1
        return counts

    out: dict[str, Any] = {}
    for model, c in asyncio.run(run()).items():
        matching, other = c["matching asked"] + c["matching skipped"], c["other asked"] + c["other skipped"]
        out[model] = {**c, "matching_kept": round(c["matching asked"] / matching, 3) if matching else None,
                      "others_skipped": round(c["other skipped"] / other, 3) if other else None,
                      "same_as_live": round(c["same as live"] / c["asked with an answer"], 3)
                      if c["asked with an answer"] else None}
    return out


async def session(args: argparse.Namespace, root: Path, out: Path) -> tuple[User, dict[str, str], dict[str, Any], float]:
    user = User(args, out)
    await user.start(root)
    started, originals = time.time(), {}
    typed = 0.0
    try:
        for name in args.files:
            path = (root / name).resolve()
            original = originals[str(path)] = path.read_text()
            for a, b in function_bodies(original, args.per_file, user.rng):
                print(f"typing {name}:{position(original, a).line + 1} ({b - a} characters)", file=sys.stderr)
                try:
                    await user.type_body(path, original, a, b)
                finally:
                    path.write_text(original)  # the project is left as it was
        typed = time.time() - started
        print(f"typed in {typed:.0f} s; waiting for the persistence checkpoints", file=sys.stderr)
        await asyncio.sleep(600 / PERSISTENCE_SPEED + 5)
    finally:
        status = await user.stop()
    return user, originals, status, typed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--per-file", type=int, default=4)
    parser.add_argument("--key-s", type=float, default=0.15, help="seconds between keys (0.15: ~6 characters/s)")
    parser.add_argument("--read-s", type=float, default=0.6)
    parser.add_argument("--p-accept", type=float, default=1.0)
    parser.add_argument("--p-wrong", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", type=Path)
    args = parser.parse_args()
    root = args.project.resolve()
    out = args.out or Path(tempfile.mkdtemp(prefix="heedls-user-"))
    out.mkdir(parents=True, exist_ok=True)
    user, originals, status, typed = asyncio.run(session(args, root, out))
    (out / "client-log.json").write_text(json.dumps(user.log, indent=1))
    exported = out / "events.jsonl"
    subprocess.run([sys.executable, "-m", "heedls", "telemetry", "export", "--format", "jsonl", "-o", str(exported)],
                   cwd=root, env={**os.environ, "HEEDLS_DATA_DIR": str(out / "data")}, check=True, capture_output=True)
    events = [json.loads(line) for line in exported.read_text().splitlines() if line.strip()]
    client = Counter(e["outcome"] for e in user.log if "outcome" in e)
    print(json.dumps({"out": str(out), "typed_s": round(typed), "requests": len(events), "client": client,
                      "status": status.get("gate"), **compare(events, user.log, originals, root),
                      "stage1_live": stage1_check(events, originals, root)}, indent=1))


if __name__ == "__main__":
    main()
