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
