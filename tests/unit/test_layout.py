"""The design card's layout rules, as tests."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_analyzers_never_import_the_lsp_layer() -> None:
    offenders = []
    for path in (ROOT / "analyzers").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in {"pygls", "lsprotocol"} or name.startswith("heedls.server"):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_folders_are_mapped_into_the_heedls_namespace() -> None:
    for name in ("heedls.server", "heedls.analyzers"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
    assert Path(importlib.util.find_spec("heedls.server").origin).parent == ROOT / "server"  # type: ignore[union-attr]
    # nothing named `server` or `analyzers` is importable at the top level from the install
    assert importlib.util.find_spec("analyzers") is None or Path.cwd() == ROOT


def test_every_vscode_setting_is_documented_and_known_to_the_server() -> None:
    """The extension's settings reach the server under its own keys (settings.ts renames
    tests.timeoutSeconds to tests.timeoutS): each one is accepted without an "unknown setting"
    warning, and docs/editors.md's table lists each."""
    import json

    from heedls.server import config as config_mod

    repo = Path(__file__).resolve().parents[2]
    properties = json.loads((repo / "editors/vscode/package.json").read_text())["contributes"]["configuration"]["properties"]
    table = (repo / "docs/editors.md").read_text()
    client_only = {"heedls.serverCommand", "heedls.interpreter", "heedls.trace.server"}
    for key, spec in properties.items():
        assert f"`{key}`" in table, key
        if key in client_only:
            continue
        path = key.removeprefix("heedls.").replace("tests.timeoutSeconds", "tests.timeoutS").split(".")
        settings: dict = {}
        node = settings
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = spec["default"]
        _, warnings = config_mod.load(None, settings, None)
        assert not [w for w in warnings if "unknown" in w], (key, warnings)
