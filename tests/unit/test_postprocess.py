"""Post-processing: what the user sees is what the provider meant, without the noise."""

from __future__ import annotations

from heedls.server.pipeline.postprocess import first_shown, postprocess
from heedls.server.providers.base import Candidate, CompletionRequest


def req(prefix: str, suffix: str = "", max_lines: int = 8) -> CompletionRequest:
    return CompletionRequest(prefix=prefix, suffix=suffix, max_lines=max_lines)


def test_drops_the_part_the_suffix_already_has() -> None:
    assert postprocess("values)", req("print(len(", ")")) == "values)"
    assert postprocess("x, y)", req("f(", ")")) == "x, y"


def test_leaves_an_editors_auto_closed_brackets_to_the_suffix() -> None:
    # `return (str(out[` with `]))` auto-closed after the cursor: the line's own closers, typed
    # again, would leave `return (str(out[2]), _bd)]))`; the suggestion stops where the suffix
    # closes every bracket still open
    assert postprocess("2]), _bd)", req("    return (str(out[", "]))")) == "2"
    assert postprocess("tuple, list)):", req("if isinstance(cmd, (", "))")) == "tuple, list"
    # the suffix closes only the brackets no bracket of its own opened
    assert postprocess("bar(1))", req("foo(", ") + g(x)")) == "bar(1)"
    # one closer after the cursor for two open brackets: which one it closes is unknown, so the
    # suggestion closes the inner one itself
    assert postprocess("x))", req("f(g(", ")")) == "x)"


def test_drops_closers_that_close_nothing() -> None:
    assert postprocess("values)))", req("n = len(")) == "values)"


def test_keeps_brackets_inside_strings() -> None:
    assert postprocess("')')", req("print(")) == "')')"


def test_stops_at_a_dedent_below_the_cursor_block() -> None:
    prefix = "def f(xs):\n    for x in xs:\n        "
    text = "total += x\n        count += 1\n    return total\n"
    assert postprocess(text, req(prefix)) == "total += x\n        count += 1"


def test_stops_at_a_repeated_line() -> None:
    prefix = "def f():\n    a = 1\n    "
    assert postprocess("b = 2\n    b = 2\n    b = 2", req(prefix)) == "b = 2"


def test_caps_the_number_of_lines() -> None:
    prefix = "def f():\n    "
    text = "\n    ".join(f"x{i} = {i}" for i in range(10))
    assert postprocess(text, req(prefix, max_lines=3)) == "x0 = 0\n    x1 = 1\n    x2 = 2"


def test_drops_an_echo_of_the_current_line() -> None:
    assert postprocess("    return total", req("def f():\n    return ")) == "total"


def test_empty_and_whitespace_only_results_are_dropped() -> None:
    assert postprocess("", req("x = ")) is None
    assert postprocess("   \n\t\n", req("x = ")) is None


def test_tabs_follow_the_document() -> None:
    prefix = "def f():\n\tif x:\n\t\t"
    assert postprocess("y = 1\n\t\tz = 2", req(prefix)) == "y = 1\n\t\tz = 2"
    prefix_spaces = "def f():\n    if x:\n        "
    assert postprocess("y = 1\n\t\tz = 2", req(prefix_spaces)) == "y = 1\n        z = 2"


def test_a_multiline_suggestion_in_the_middle_of_a_line_keeps_only_its_first_line() -> None:
    # the rest of the cursor line would otherwise be pushed after the last suggested line
    assert postprocess("a, b):\n    pass", req("def f(", "):")) == "a, b"


def test_stops_before_retyping_the_line_that_follows_the_cursor() -> None:
    """FIM models run past the gap: `return y` is already there, a second one is not wanted."""
    prefix = "def f(x):\n    y = "
    assert postprocess("x + 1\n    return y", req(prefix, "\n    return y\n")) == "x + 1"
    at_start = "def f(x):\n    y = x + 1\n    "
    assert postprocess("return y", req(at_start, "\n    return y\n")) is None  # the whole line is there already
    assert postprocess("z = y\n    return z", req(at_start, "\n    return y\n")) == "z = y\n    return z"


def test_what_is_shown_is_the_first_candidate_left_with_text_after_postprocess() -> None:
    request = req("def f(x):\n    return ", "\n")
    empty, blank, good, later = (Candidate("", "local", source="ngram"), Candidate("   \n", "local"),
                                Candidate("x + 1", "local", confidence=0.4, source="retrieval"),
                                Candidate("x - 1", "local"))
    shown = first_shown([empty, blank, good, later], request)
    assert shown is not None and shown == ("x + 1", good)  # nothing left of the first two
    assert first_shown([empty, blank], request) is None and first_shown([], request) is None
