"""The pytest plugin heedls puts on the workspace interpreter's PYTHONPATH.

This package exists so the plugin file ships with heedls; the plugin itself
(`heedls_pytest_plugin.py`) is a self-contained module (stdlib + pytest only) because it runs in
the *workspace's* interpreter, where heedls is usually not installed.
"""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent
PLUGIN_MODULE = "heedls_pytest_plugin"
