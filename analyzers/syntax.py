"""Syntax errors: tree-sitter for *where* (every error, incrementally, at any point of typing) and
`compile()` for *what* (the interpreter's own message, and errors tree-sitter cannot see such as
bad indentation or `return` outside a function).

One `SyntaxDocument` per open buffer keeps its tree-sitter `Tree`; `update(text)` diffs the new
text against the old one (common prefix/suffix, so it works whatever the client's change events
looked like), tells the tree about the edit and reparses with the old tree, which is what makes a
re-parse after a keystroke cost well under a millisecond on ordinary files.

Merging the two views: compile() stops at the first error, so its location and message win for
that one; tree-sitter errors that come before it (the interpreter parsed that far, so they are
tree-sitter's own confusion) or that overlap it are dropped, and the later ones are kept as
secondary diagnostics. When compile() accepts the file, tree-sitter's complaints are dropped too:
the interpreter is the authority on what is valid Python.
"""

from __future__ import annotations

import io
import logging
import re
import time
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tree_sitter
import tree_sitter_python
from heedls.analyzers.model import Diagnostic, Position, Range

log = logging.getLogger("heedls.syntax")

SOURCE = "syntax"
DOCS_URL = "https://docs.python.org/3/library/exceptions.html#{name}"
# Cap on the tree-sitter-only diagnostics per file: after a few, they are cascades of the first.
MAX_SECONDARY = 20

_LANGUAGE = tree_sitter.Language(tree_sitter_python.language())


def new_parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(_LANGUAGE)


# -- reading files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A file's text as the interpreter would decode it, plus the decoding problem if any."""

    text: str
    raw: bytes
    decode_error: UnicodeDecodeError | None = None
    encoding: str = "utf-8"
    declaration_error: str | None = None  # why the PEP 263 cookie / BOM was not taken (read as UTF-8)


def read_source(path: Path | str) -> Source:
    """Decode like the interpreter (PEP 263 cookie / BOM, else UTF-8); never raises on bad bytes."""
    raw = Path(path).read_bytes()
    return decode_source(raw)


def decode_source(raw: bytes) -> Source:
    declared: str | None = None
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError as exc:  # an unknown coding cookie: compile() reports it
        encoding, declared = "utf-8", exc.msg
    try:
        return Source(raw.decode(encoding), raw, None, encoding, declared)
    except UnicodeDecodeError as exc:
        # Keep going with replacement characters so the rest of the file is still checked.
        return Source(raw.decode(encoding, "replace"), raw, exc, encoding, declared)
    except LookupError:
        return Source(raw.decode("utf-8", "replace"), raw, None, "utf-8")


# -- positions -----------------------------------------------------------------------------------


def _node_char_col(data: bytes, byte_offset: int, point: tuple[int, int]) -> tuple[int, int]:
    """(line, character) of a tree-sitter node's byte offset into UTF-8 `data` and its point (row,
    byte column), characters as Python str counts them. The point gives the line: counting line
    breaks from the file's start for every error made a file with many of them quadratic (a
    1.3 MB one took 54 s)."""
    row, byte_column = point
    line_start = byte_offset - byte_column
    return row, len(data[line_start:byte_offset].decode("utf-8", "replace"))


# A lone carriage return ends a line for the LSP and for compile() (classic Mac files), but not
# for tree-sitter or a split on "\n": such a file's every error was reported on its first line.
# Read as a newline, one byte for one, so offsets and columns stay as they are.
_LONE_CR = re.compile(r"\r(?!\n)")


def _lsp_lines(text: str) -> str:
    return _LONE_CR.sub("\n", text) if "\r" in text else text


def source_lines(text: str) -> list[str]:
    return _lsp_lines(text).split("\n")


def _widen(rng: Range, lines: list[str]) -> Range:
    """Editors draw nothing for an empty range: cover the previous character, or the next one."""
    if rng.start != rng.end:
        return rng
    line, col = rng.start.line, rng.start.character
    length = len(lines[line]) if 0 <= line < len(lines) else 0
    if col > 0 and col <= length:
        return Range(Position(line, col - 1), Position(line, col))
    if col < length:
        return Range(Position(line, col), Position(line, col + 1))
    return rng


# -- compile() -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompileError:
    kind: str  # SyntaxError | IndentationError | TabError | ValueError
    message: str
    range: Range


def _word_end(line: str, col: int) -> int:
    end = col
    while end < len(line) and (line[end].isalnum() or line[end] == "_"):
        end += 1
    return max(end, col + 1) if col < len(line) else col


def compile_error(text: str, filename: str = "<unknown>") -> CompileError | None:
    """The interpreter's verdict on `text`: None when it compiles, else its first error."""
    # A byte-order mark is valid at the start of a file, but compile() of a str rejects it: compiled
    # without it, the first line's columns are one further on.
    bom = 1 if text.startswith("\ufeff") else 0
    try:
        # Never the real path: when the file exists, CPython re-reads the error line from disk to
        # place the column, and the buffer being typed is not what is on disk.
        compile(text[bom:], f"<{filename}>", "exec", dont_inherit=True)
        return None
    except SyntaxError as exc:
        err: SyntaxError = exc
    except UnicodeEncodeError as exc:  # a lone surrogate (an editor sent "\ud800"): no UTF-8 for it
        pos = exc.start + bom
        line = text.count("\n", 0, pos)
        col = pos - (text.rfind("\n", 0, pos) + 1)
        char = text[pos] if pos < len(text) else ""
        return CompileError("SyntaxError", f"a lone surrogate U+{ord(char):04X} cannot be written as UTF-8" if char
                            else str(exc), Range.of(line, col, line, col + 1))
    except ValueError as exc:  # 3.11: null bytes raise ValueError
        err = SyntaxError(str(exc))
    except (RecursionError, MemoryError) as exc:  # absurdly nested code: not our problem to report
        log.debug("compile() gave up: %s", type(exc).__name__)
        return None
    lines = source_lines(text)
    message = err.msg or str(err)
    if err.lineno is None:
        # No location (e.g. null bytes): find the offending character ourselves.
        nul = text.find("\x00")
        pos = max(nul, 0)
        line = text.count("\n", 0, pos)
        col = pos - (text.rfind("\n", 0, pos) + 1)
        return CompileError(type(err).__name__, message, Range.of(line, col, line, col + 1))
    line = max(err.lineno - 1, 0)
    line = min(line, max(len(lines) - 1, 0))
    text_line = lines[line] if lines else ""
    col = max((err.offset or 1) - 1, 0) + (bom if line == 0 else 0)
    col = min(col, len(text_line))
    end_line, end_col = line, -1
    if err.end_lineno is not None and err.end_offset is not None and err.end_offset > 0:
        end_line = min(max(err.end_lineno - 1, line), len(lines) - 1)
        end_col = err.end_offset - 1 + (bom if end_line == 0 else 0)
        if end_line == line and end_col <= col:
            end_col = -1
    if end_col < 0:
        # Unknown end (CPython gives 0 or -1): cover the token at the error.
        end_line, end_col = line, _word_end(text_line, col)
    rng = Range(Position(line, col), Position(end_line, min(end_col, len(lines[end_line]))))
    return CompileError(type(err).__name__, message, _widen(rng, lines))


# -- tree-sitter ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeError:
    kind: str  # "missing" | "error"
    range: Range
    message: str
    token: str


def _first_leaf(node: tree_sitter.Node) -> tree_sitter.Node:
    while node.child_count:
        node = node.children[0]
    return node


def _error_nodes(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Innermost ERROR nodes and MISSING nodes, in document order; only subtrees with errors are
    visited, so this is cheap even on huge files."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_missing:
            yield node
            continue
        children = [c for c in node.children if c.has_error or c.is_missing]
        if node.is_error and not any(c.is_error or c.has_error for c in children):
            yield node
            continue
        stack.extend(reversed(children))


def tree_errors(tree: tree_sitter.Tree, data: bytes) -> list[TreeError]:
    out: list[TreeError] = []
    root = tree.root_node
    if not root.has_error:
        return out
    for node in _error_nodes(root):
        sl, sc = _node_char_col(data, node.start_byte, node.start_point)
        if node.is_missing:
            expected = node.type
            label = f"'{expected}'" if not node.is_named else expected.replace("_", " ")
            rng = Range.of(sl, sc)
            out.append(TreeError("missing", rng, f"expected {label}", expected))
            continue
        el, ec = _node_char_col(data, node.end_byte, node.end_point)
        if el != sl:
            # A multi-line ERROR swallows the rest of a statement; the first line is where it went
            # wrong, and a precise range matters more than covering everything.
            line_end = data.find(b"\n", node.start_byte)
            el, ec = sl, len(data[node.start_byte - node.start_point[1]:line_end].decode("utf-8", "replace"))
            if ec == sc and el == sl:
                ec = sc + 1
        leaf = _first_leaf(node)
        token = leaf.text.decode("utf-8", "replace") if leaf.text is not None else ""
        token = token.splitlines()[0][:40] if token.strip() else token[:40]
        message = f"invalid syntax near {token!r}" if token.strip() else "invalid syntax"
        out.append(TreeError("error", Range.of(sl, sc, el, ec), message, token))
    out.sort(key=lambda e: (e.range.start, e.range.end))
    return out


def _overlaps_lines(a: Range, b: Range) -> bool:
    return not (a.end.line < b.start.line or b.end.line < a.start.line)


def merge(path: str, text: str, compiled: CompileError | None, errors: list[TreeError]) -> list[Diagnostic]:
    """The rules of the module docstring, as code."""
    if compiled is None:
        if errors:
            log.debug("%d tree-sitter errors in a file compile() accepts; ignored", len(errors))
        return []
    lines = source_lines(text)
    first = Diagnostic(
        path=path,
        range=compiled.range,
        severity="error",
        source=SOURCE,
        code=compiled.kind if compiled.kind != "ValueError" else "SyntaxError",
        message=compiled.message,
        url=DOCS_URL.format(name=compiled.kind if compiled.kind != "ValueError" else "SyntaxError"),
        rank=1.0,
        data={"origin": "compile", "kind": compiled.kind, "first": True},
    )
    out = [first]
    kept = 0
    for err in errors:
        if err.range.start <= compiled.range.end or _overlaps_lines(err.range, compiled.range):
            continue
        if any(_overlaps_lines(err.range, d.range) for d in out[1:]):
            continue  # one diagnostic per line is enough for cascades
        if kept >= MAX_SECONDARY:
            break
        kept += 1
        out.append(
            Diagnostic(
                path=path,
                range=_widen(err.range, lines),
                severity="error",
                source=SOURCE,
                code="SyntaxError",
                message=err.message,
                url=DOCS_URL.format(name="SyntaxError"),
                # Later errors are often consequences of the first; rank them below it.
                rank=0.5 - 0.01 * kept,
                data={"origin": "tree-sitter", "kind": err.kind, "token": err.token, "first": False},
            )
        )
    return out


def _decode_diagnostic(path: str, source: Source) -> Diagnostic | None:
    exc = source.decode_error
    if exc is None:
        return None
    # The interpreter's message for this file, e.g. "(unicode error) 'utf-8' codec can't decode ...".
    message = str(exc)
    try:
        compile(source.raw, f"<{path}>", "exec", dont_inherit=True)
    except SyntaxError as err:
        message = err.msg or message
    except (ValueError, RecursionError, MemoryError):
        pass
    prefix = source.raw[: exc.start]
    line = prefix.count(b"\n")
    line_bytes = prefix[prefix.rfind(b"\n") + 1 :]
    col = len(line_bytes.decode(source.encoding, "replace"))
    return Diagnostic(
        path=path,
        range=Range.of(line, col, line, col + 1),
        severity="error",
        source=SOURCE,
        code="SyntaxError",
        message=message,
        url="https://peps.python.org/pep-0263/",
        rank=1.1,
        data={"origin": "compile", "kind": "UnicodeDecodeError", "encoding": source.encoding, "first": True},
    )


_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+")  # PEP 263's


def _declaration_diagnostic(path: str, source: Source) -> Diagnostic | None:
    """A coding declaration the interpreter refuses (`# coding: klingon`: "unknown encoding"): the
    file cannot be imported at all, though its text, read as UTF-8, compiles (a str's cookie is
    ignored), so it read as clean. Placed on the declaration's line."""
    if source.declaration_error is None:
        return None
    lines = source.raw.split(b"\n", 2)[:2]
    row = next((i for i, line in enumerate(lines) if _COOKIE.match(line)), 0)
    width = len(lines[row].decode("utf-8", "replace").rstrip("\r")) if lines else 0
    return Diagnostic(
        path=path,
        range=Range.of(row, 0, row, max(width, 1)),
        severity="error",
        source=SOURCE,
        code="SyntaxError",
        message=source.declaration_error,
        url="https://peps.python.org/pep-0263/",
        rank=1.1,
        data={"origin": "compile", "kind": "coding declaration", "first": True},
    )


# -- documents -----------------------------------------------------------------------------------


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the common prefix; binary search over memcmp'd slices (C speed on big buffers)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    lo, hi = 0, limit
    if hi and a[len(a) - hi :] == b[len(b) - hi :]:
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _point(data: bytes, offset: int) -> tuple[int, int]:
    return data.count(b"\n", 0, offset), offset - (data.rfind(b"\n", 0, offset) + 1)


def _encode(text: str) -> bytes:
    return _lsp_lines(text).encode("utf-8", "surrogatepass")


class SyntaxDocument:
    """One buffer's parse tree, kept across edits for incremental re-parsing."""

    def __init__(self, path: str, text: str, parser: tree_sitter.Parser | None = None) -> None:
        self.path = path
        self._parser = parser or new_parser()
        self.text = text
        self.data = _encode(text)
        self.tree = self._parser.parse(self.data)
        self.last_parse_s = 0.0

    def update(self, text: str) -> None:
        """Reparse after an edit. The edit is recovered by diffing, so any sequence of client
        change events (or a full-text replace) collapses into one tree-sitter edit."""
        new = _encode(text)
        old = self.data
        start = time.perf_counter()
        if new == old:
            self.text = text
            return
        prefix = _common_prefix(old, new)
        suffix = _common_suffix(old, new, min(len(old), len(new)) - prefix)
        old_end, new_end = len(old) - suffix, len(new) - suffix
        self.tree.edit(
            start_byte=prefix,
            old_end_byte=old_end,
            new_end_byte=new_end,
            start_point=_point(old, prefix),
            old_end_point=_point(old, old_end),
            new_end_point=_point(new, new_end),
        )
        self.tree = self._parser.parse(new, self.tree)
        self.text, self.data = text, new
        self.last_parse_s = time.perf_counter() - start

    def tree_errors(self) -> list[TreeError]:
        return tree_errors(self.tree, self.data)

    def diagnostics(self) -> list[Diagnostic]:
        compiled = compile_error(self.text, self.path)
        if compiled is None:
            return []  # the fast, common case: no need to walk the tree at all
        return merge(self.path, self.text, compiled, self.tree_errors())


def check_text(path: str, text: str) -> list[Diagnostic]:
    """Syntax diagnostics of a text checked once (no buffer to re-parse later): tree-sitter only
    runs when compile() has found an error, which most files have not (it was a third of
    `heedls check`'s time on a large tree)."""
    compiled = compile_error(text, path)
    if compiled is None:
        return []
    return merge(path, text, compiled, SyntaxDocument(path, text).tree_errors())


def check_file(path: Path | str) -> list[Diagnostic]:
    """Syntax diagnostics of a file on disk, whatever its bytes."""
    source = read_source(path)
    name = str(Path(path).resolve())
    decode = _decode_diagnostic(name, source) or _declaration_diagnostic(name, source)
    diagnostics = check_text(name, source.text)
    if decode is None:
        return diagnostics
    # Replacement characters make compile() happy; the decoding problem is the real first error.
    return [decode] + [d for d in diagnostics if d.range.start.line != decode.range.start.line]
