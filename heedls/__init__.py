"""heedls: inline suggestions, explained errors and test-validated fixes for Python, over LSP."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("heedls")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
