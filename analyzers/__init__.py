"""heedls.analyzers — static analysis, test runs, explanations and repair.

Pure: nothing here imports pygls or lsprotocol (a test enforces it). Everything returns plain
dataclasses from `heedls.analyzers.model`; the server translates them into LSP types.
"""
