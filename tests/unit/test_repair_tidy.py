"""A fix is shown as a developer would write it: parentheses the edit left around a lone operand
go, everything else the author wrote stays, and the module means exactly what was validated."""

from __future__ import annotations

import ast

import pytest
from heedls.analyzers.repair.tidy import drop_redundant_parens


def _tidy(original: str, edited: str) -> str:
    tidied = drop_redundant_parens(original, edited)
    assert ast.dump(ast.parse(tidied)) == ast.dump(ast.parse(edited))  # what the tests ran
    return tidied


def test_an_operand_dropped_inside_parentheses_leaves_no_parentheses() -> None:
    original = "def mean(xs, total):\n    return total / (len(xs) - 1)\n"
    edited = "def mean(xs, total):\n    return total / (len(xs))\n"
    assert _tidy(original, edited) == "def mean(xs, total):\n    return total / len(xs)\n"


@pytest.mark.parametrize(
    ("original", "edited", "expected"),
    [
        ("if(x - 1):\n    pass\n", "if(x):\n    pass\n", "if x:\n    pass\n"),  # no `ifx`
        ("y = ((a - 1))\n", "y = ((a))\n", "y = a\n"),
        ("y = -(a - 1)\n", "y = -(a)\n", "y = -a\n"),
        ("y = (a - 1)\r\nz = 2\r\n", "y = (a)\r\nz = 2\r\n", "y = a\r\nz = 2\r\n"),
    ],
)
def test_grouping_parentheses_around_the_edit_go(original: str, edited: str, expected: str) -> None:
    assert _tidy(original, edited) == expected


@pytest.mark.parametrize(
    ("original", "edited"),
    [
        ("y = f(a - 1)\n", "y = f(a)\n"),  # a call's parentheses
        ("y = (a, b - 1)\n", "y = (a, b)\n"),  # a tuple
        ("y = (a * b - 1)\n", "y = (a * b)\n"),  # an operator expression: grouping may be the point
        ("y = (1 - 2).real\n", "y = (1).real\n"),  # `1.real` does not parse
        ("y = sum(x - 1 for x in xs)\n", "y = sum(x for x in xs)\n"),
        ("y = (a -\n     1)\n", "y = (a\n     )\n"),  # over two lines: left to the author
    ],
)
def test_parentheses_that_mean_something_stay(original: str, edited: str) -> None:
    assert _tidy(original, edited) == edited


def test_the_authors_own_parentheses_elsewhere_stay() -> None:
    original = "y = (a) + (b - 1)\n"
    edited = "y = (a) + (b)\n"
    assert _tidy(original, edited) == "y = (a) + b\n"


def test_text_that_does_not_parse_is_returned_as_it_is() -> None:
    assert drop_redundant_parens("y = (a - 1\n", "y = (a\n") == "y = (a\n"
