"""The local provider's lexer: spacing-aware tokens, the cursor context, incremental re-tokenization."""

from __future__ import annotations

from heedls.server.providers.code_tokens import (
    BOF,
    DED,
    EOL,
    IND,
    DocTokens,
    cursor_context,
    line_tokens,
    render,
    tokenize_line,
    tokenize_source,
)


def test_tokens_carry_the_space_before_them() -> None:
    assert tokenize_line("x = foo(a, b)") == ["x", " =", " foo", "(", "a", ",", " b", ")"]
    assert tokenize_line("    return  x**2  # done") == ["return", " x", "**", "2", " # done"]


def test_text_is_rebuilt_exactly_from_tokens() -> None:
    line = 'result = self.assertEqual(parse("a b"), [1, 2.5e3])'
    assert "".join(tokenize_line(line)) == line


def test_unfinished_code_never_fails() -> None:
    assert tokenize_line('x = "unterminated') == ["x", " =", ' "unterminated']
    assert tokenize_line("f(a, b") == ["f", "(", "a", ",", " b"]


def test_lines_get_eol_and_indentation_markers() -> None:
    toks = tokenize_source("def f():\n    return 1\nx = 2\n")
    assert toks == [BOF, "def", " f", "(", ")", ":", EOL, IND, "return", " 1", EOL, DED, "x", " =", " 2", EOL]


def test_docstring_lines_are_single_tokens() -> None:
    per_line = line_tokens(['def f():', '    """Summary.', '', '    More words here.', '    """', '    pass'])
    assert per_line[3] == ["More words here.", EOL]
    assert per_line[5][-2:] == ["pass", EOL]


def test_cursor_context_separates_the_token_being_typed() -> None:
    ctx = cursor_context("import os\nx = fo")
    assert ctx.tokens[-2:] == ["x", " ="]
    assert ctx.pending == " fo"
    assert ctx.line_prefix == "x = fo"
    assert ctx.prev_lines == ["import os"]


def test_cursor_context_after_a_space_wants_a_spaced_token() -> None:
    assert cursor_context("x = ").pending == " "
    assert cursor_context("for i in range(len(").pending == "("


def test_cursor_context_at_a_line_start_knows_the_indentation() -> None:
    ctx = cursor_context("def f():\n    ")
    assert ctx.pending == ""
    assert ctx.tokens[-1] == IND
    ctx = cursor_context("def f():\n    pass\n")
    assert ctx.tokens[-1] == DED


def test_render_drops_what_was_typed_and_stops_at_the_line_end() -> None:
    assert render([" foo", "(", ")", EOL, "next"], " fo") == "o()"
    assert render([" =", " 1"], " ") == "= 1"


def test_incremental_tokenization_matches_a_fresh_one() -> None:
    doc = DocTokens()
    first = ["class A:", '    """Doc', "    string."]
    doc.update(first)
    second = first[:2] + ['    """', "    x = 1"]
    kept = doc.update(second)
    assert kept == 2
    assert doc.tokens == line_tokens(second)


def test_cursor_context_inside_an_open_string_or_comment_is_typing_that_literal() -> None:
    assert cursor_context('x = "hello ').pending == ' "hello '
    assert cursor_context("x = 1  # the ").pending == " # the "
    assert cursor_context('x = "a\\" ').pending == ' "a\\" '  # the quote is escaped: still open
    assert cursor_context('x = "ok" ').pending == " "  # closed: the next token is code
    assert cursor_context("x = ''").pending == " ''"
