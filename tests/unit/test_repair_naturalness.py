"""What makes a plausible fix read as unnatural: findings a linter would add to the fixed module."""

from __future__ import annotations

from heedls.analyzers.repair.naturalness import introduced_smells, smells


def test_a_variable_bound_and_never_read_after_the_fix_is_a_finding() -> None:
    before = "def f(xs, x):\n    return [c * x for i, c in enumerate(xs)]\n"
    after = before.replace("c * x", "x * x")
    assert introduced_smells(before, after) == 1
    assert introduced_smells(before, before.replace("c * x", "c + x")) == 0


def test_names_unread_before_the_fix_are_not_held_against_it() -> None:
    before = "def f(unused, x):\n    return x < 1\n"
    assert introduced_smells(before, before.replace("<", "<=")) == 0
    assert introduced_smells("def f(_x, y):\n    return y\n", "def f(_x, y):\n    return y\n") == 0


def test_expressions_constant_by_construction_are_findings() -> None:
    assert smells("def f(x, y):\n    return abs(y - y) + (x == x)\n") == {"self-operation": 1, "self-comparison": 1}
    assert smells("def f(x):\n    if True:\n        return x\n    while True:\n        pass\n") == {"constant-condition": 1}


def test_an_operation_undone_at_once_is_a_finding() -> None:
    """What an off-by-one applied on top of another leaves: `islice(xs, (n + 1) - 1)` ranks after
    the fix that drops the `+ 1`."""
    before = "def nth(xs, n):\n    return xs[n + 1]\n"
    assert introduced_smells(before, before.replace("n + 1", "(n + 1) - 1")) == 1
    assert introduced_smells(before, before.replace("n + 1", "n")) == 0
    assert smells("def f(x, k):\n    return (x - k) + k, (x * 2) / 2\n") == {"undone-operation": 2}
    assert smells("def f(x, k):\n    return (x + k) - 1, (x - 1) - 1, (x * 2) // 2\n") == {}


def test_one_name_passed_twice_is_a_finding() -> None:
    """`hashkey(args, *args)` passed cachetools' tests as well as dropping the stray `self`."""
    before = "def methodkey(self, *args):\n    return hashkey(self, *args)\n"
    # the name passed twice (and `self` left unread)
    assert smells(before.replace("hashkey(self, ", "hashkey(args, ")) - smells(before) == {
        "repeated-argument": 1, "unread:methodkey:self": 1}
    assert smells(before.replace("hashkey(self, ", "hashkey(")) - smells(before) == {"unread:methodkey:self": 1}
    assert smells("def f(v, w):\n    return dot(v, v), dot(v, w), g(v.x, v.y)\n") == {"repeated-argument": 1}


def test_and_mixed_with_or_needs_parentheses_to_pass() -> None:
    assert smells("def f(a, b, c):\n    return a and b or c\n") == {"mixed-and-or": 1}
    assert smells("def f(a, b, c):\n    return (a and b) or c\n") == {}


def test_a_duplicated_entry_of_a_literal_collection_is_no_finding() -> None:
    # `(1, 3, 3, 5)` for `(1, 2, 3, 5)` takes a stray entry out; `(1, 0, 3, 5)` would put another in
    assert introduced_smells("DIGITS = (1, 2, 3, 5)\n", "DIGITS = (1, 3, 3, 5)\n") == 0


def test_text_that_does_not_parse_has_no_findings() -> None:
    assert smells("def f(:\n") == {}


def test_a_function_that_returns_a_value_and_can_fall_off_its_end_is_a_finding() -> None:
    # `while True:` → `while node:` makes the end reachable: callers then get an implicit None
    before = ("def last(node):\n    while True:\n        if node.next is None:\n            return node.value\n"
              "        node = node.next\n")
    assert smells(before) == {}
    assert smells(before.replace("while True:", "while node:")) == {"implicit-return:last": 1}
    assert introduced_smells(before, before.replace("while True:", "while node:")) == 1


def test_functions_whose_every_path_ends_or_that_return_nothing_are_no_finding() -> None:
    ends = ("def sign(x):\n    if x < 0:\n        return -1\n    elif x == 0:\n        return 0\n    else:\n"
            "        return 1\n")
    assert smells(ends) == {}
    tried = "def parse(s):\n    try:\n        return int(s)\n    except ValueError:\n        raise\n"
    assert smells(tried) == {}
    assert smells("def log(xs):\n    for x in xs:\n        if x:\n            return\n    print(xs)\n") == {}
    assert smells("def gen(xs):\n    for x in xs:\n        yield x\n    return 3\n") == {}
    # a loop left by `break` does fall off
    broken = "def first(xs):\n    while True:\n        if xs:\n            break\n        return 0\n"
    assert smells(broken) == {"implicit-return:first": 1}
