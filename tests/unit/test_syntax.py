"""Syntax diagnostics on real code: errors typed character by character into stdlib files,
incremental re-parsing identical to a fresh parse, the interpreter's messages and positions,
non-UTF-8 bytes, null bytes, and a 5 MB file."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
from heedls.analyzers import syntax

STDLIB = Path(sysconfig.get_paths()["stdlib"])
REAL_FILES = ["textwrap.py", "json/decoder.py", "fractions.py"]


def _compile_error(text: str) -> SyntaxError | None:
    try:
        compile(text, "<test>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return exc
    return None


def _insertion_point(text: str) -> int:
    """Start of the first top-level `def`/`class` line: a realistic place to type a statement."""
    offset = 0
    for line in text.splitlines(keepends=True):
        if line.startswith(("def ", "class ")):
            return offset
        offset += len(line)
    raise AssertionError("no top-level definition found")


TYPED = 'total = compute(items[0], {"key": [1, 2]}, lambda x: (x + 1) * 2)\n'


@pytest.mark.parametrize("name", REAL_FILES)
def test_typing_a_statement_char_by_char_into_a_stdlib_file(name: str) -> None:
    original = (STDLIB / name).read_text(encoding="utf-8")
    at = _insertion_point(original)
    indent = original[at:].split("\n", 1)[0]
    indent = indent[: len(indent) - len(indent.lstrip())]
    doc = syntax.SyntaxDocument(str(STDLIB / name), original)
    assert doc.diagnostics() == []
    typed = indent + TYPED
    saw_unclosed = saw_errors = 0
    for n in range(1, len(typed) + 1):
        text = original[:at] + typed[:n] + original[at:]
        doc.update(text)
        # Incremental re-parse gives exactly the tree a fresh parse gives.
        fresh = syntax.SyntaxDocument(doc.path, text)
        assert str(doc.tree.root_node) == str(fresh.tree.root_node), f"tree differs after {typed[:n]!r}"
        found = doc.diagnostics()
        assert found == fresh.diagnostics()
        expected = _compile_error(text)
        if expected is None:
            assert found == [], typed[:n]
            continue
        saw_errors += 1
        first = found[0]
        # The interpreter's own message, at the interpreter's line.
        assert first.message == expected.msg
        assert first.source == "syntax" and first.severity == "error"
        assert first.range.start.line == expected.lineno - 1
        assert first.range.start <= first.range.end
        # At most one diagnostic per line: cascades are deduplicated.
        lines = [d.range.start.line for d in found]
        assert len(lines) == len(set(lines))
        if expected.msg.endswith("was never closed"):
            saw_unclosed += 1
            line = text.split("\n")[first.range.start.line]
            assert line[first.range.start.character] in "([{"  # points at the bracket itself
    assert saw_errors > len(typed) // 2  # most prefixes of the statement are broken code


def test_deleting_char_by_char_agrees_with_a_fresh_parse() -> None:
    original = (STDLIB / "textwrap.py").read_text(encoding="utf-8")
    start = original.index("def dedent(")
    doc = syntax.SyntaxDocument("textwrap.py", original)
    text = original
    for _ in range(60):  # backspace through `def dedent(text):` and into the docstring
        cut = start + 20
        text = text[: cut - 1] + text[cut:]
        start -= 1 if start > 0 else 0
        doc.update(text)
        assert str(doc.tree.root_node) == str(syntax.SyntaxDocument("x", text).tree.root_node)
        assert bool(doc.diagnostics()) == (_compile_error(text) is not None)


def test_errors_only_the_interpreter_sees_are_reported() -> None:
    (ret,) = syntax.check_text("/m.py", "x = 1\nreturn x\n")
    assert ret.message == "'return' outside function"
    assert (ret.range.start.line, ret.range.start.character) == (1, 0)
    (indent,) = syntax.check_text("/m.py", "if True:\nprint(1)\n")
    assert indent.code == "IndentationError"
    assert indent.range.start.line == 1


def test_later_errors_come_from_tree_sitter_after_the_first() -> None:
    text = "x = )\n\ny = 1\nf(a b)\n\n\ndef g(:\n    pass\n"
    found = syntax.check_text("/m.py", text)
    assert found[0].message == "unmatched ')'" and found[0].data["origin"] == "compile"
    assert found[0].rank > max(d.rank for d in found[1:])
    later = {d.range.start.line for d in found[1:]}
    assert 3 in later and 6 in later
    assert all(d.data["origin"] == "tree-sitter" for d in found[1:])


def test_tree_sitter_complaints_about_valid_code_are_not_reported() -> None:
    # Valid for the interpreter: whatever tree-sitter thinks, nothing is reported.
    assert syntax.check_text("/m.py", "match = 1\ncase = match\nprint(case)\n") == []


def test_columns_count_characters_not_bytes() -> None:
    text = "s = 'héllo 😀' + )\n"
    (d,) = syntax.check_text("/m.py", text)
    assert text[d.range.start.character] == ")"


def test_tree_sitter_errors_after_wide_characters_on_many_lines_keep_their_columns() -> None:
    """Each error's line comes from tree-sitter's point (not by counting line breaks from the
    start of the file for every error: quadratic, 54 s on a 1.3 MB file full of them)."""
    text = "x = )\n" + "s = '😀é' ; f(a b)\n" * 3
    later = [d for d in syntax.check_text("/m.py", text) if d.data["origin"] == "tree-sitter"]
    assert [(d.range.start.line, d.range.start.character) for d in later] == [(1, 15), (2, 15), (3, 15)]
    assert text.split("\n")[1][15] == "b"  # characters, not bytes (the emoji is 4, é 2)


def test_a_byte_order_mark_is_no_error_and_the_first_lines_columns_count_it() -> None:
    """Python runs a file that starts with a BOM; an editor that keeps it counts it as a column."""
    assert syntax.check_text("/m.py", "\ufeffx = 1\n") == []
    text = "\ufeffx = )\n"
    (d,) = syntax.check_text("/m.py", text)
    assert d.message == "unmatched ')'" and text[d.range.start.character] == ")"


def test_crlf_line_endings() -> None:
    (d,) = syntax.check_text("/m.py", "x = 1\r\nprint(x\r\ny = 2\r\n")
    assert (d.range.start.line, d.range.start.character) == (1, 5)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "legacy.py"
    path.write_bytes(b"x = 1\n\ns = 'caf\xe9'\n\n\ndef f(:\n    pass\n")
    found = syntax.check_file(path)
    assert found[0].range.start.line == 2 and found[0].range.start.character == 8
    assert "utf-8" in found[0].message and "can't decode" in found[0].message
    # the rest of the file is still checked
    assert any(d.range.start.line == 5 for d in found[1:])


def test_declared_encoding_is_respected(tmp_path: Path) -> None:
    path = tmp_path / "latin.py"
    path.write_bytes(b"# -*- coding: latin-1 -*-\ns = 'caf\xe9'\nt = (s\n")
    (d,) = syntax.check_file(path)
    assert d.message == "'(' was never closed"
    assert (d.range.start.line, d.range.start.character) == (2, 4)


def test_a_lone_surrogate_is_reported_where_it_is() -> None:
    """An editor may send "\ud800" (half of a UTF-16 pair) in a document: compile() cannot encode
    it, and the error was placed at 1:0 with the codec's words."""
    (d,) = syntax.check_text("/m.py", 'x = 1\ny = "ab\ud800cd"\n')
    assert (d.range.start.line, d.range.start.character, d.range.end.character) == (1, 7, 8)
    assert d.message == "a lone surrogate U+D800 cannot be written as UTF-8"


def test_null_bytes_and_empty_files(tmp_path: Path) -> None:
    (d,) = syntax.check_text("/m.py", "x = 1\ny = 2\x00\n")
    assert "null bytes" in d.message
    assert (d.range.start.line, d.range.start.character) == (1, 5)
    assert syntax.check_text("/m.py", "") == []
    assert syntax.check_text("/m.py", "\n\n   \n") == []


def test_unclosed_bracket_at_end_of_buffer_while_typing() -> None:
    doc = syntax.SyntaxDocument("/m.py", "")
    for text in ["p", "pr", "print", "print(", "print('", "print('hi", "print('hi'", "print('hi')"]:
        doc.update(text)
        found = doc.diagnostics()
        assert bool(found) == (_compile_error(text) is not None)
        for d in found:
            assert 0 <= d.range.start.character <= len(text)


@pytest.mark.slow
def test_five_megabyte_file(tmp_path: Path) -> None:
    parts: list[str] = []
    size = 0
    for path in sorted(STDLIB.rglob("*.py")):
        if any("test" in part or part == "site-packages" for part in path.relative_to(STDLIB).parts):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "from __future__" in text:
            continue
        parts.append(text)
        size += len(text)
        if size > 5_300_000:
            break
    big = "\n".join(parts)
    error_line = big.count("\n") - 10
    lines = big.split("\n")
    lines[error_line] = lines[error_line] + " (("
    big = "\n".join(lines)
    target = tmp_path / "big.py"
    target.write_text(big, encoding="utf-8")
    assert target.stat().st_size >= 5_000_000
    found = syntax.check_file(target)
    assert found and found[0].range.start.line == error_line
    # a small edit near the top of the huge buffer re-parses incrementally and stays consistent
    doc = syntax.SyntaxDocument(str(target), big)
    doc.update("# edited\n" + big)
    assert doc.diagnostics()[0].range.start.line == error_line + 1


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_an_error_is_on_its_line_whatever_ends_the_lines(newline: str) -> None:
    """A lone carriage return ends a line for the LSP and for compile(), not for a split on "\\n"
    or tree-sitter: a classic Mac file's errors were all reported on its first line."""
    text = newline.join(["a = 1", "b = (", "c = 3", ""])
    found = syntax.check_text("m.py", text)
    assert [(d.range.start.line, d.range.start.character) for d in found][:1] == [(1, 4)]
    document = syntax.SyntaxDocument("m.py", newline.join(["def f(:", "    pass", ""]))
    assert [d.range.start.line for d in document.diagnostics()] == [0]
    document.update(newline.join(["x = 1", "def f(:", "    pass", ""]))
    assert [d.range.start.line for d in document.diagnostics()] == [1]
    assert all(e.range.start.line == 1 for e in document.tree_errors())
