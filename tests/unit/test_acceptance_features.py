"""The feature extractor: no leakage from the future or from the outcome, honest unknowns."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from heedls.server.acceptance.features import (
    CONTEXT_FEATURES,
    SUGGESTION_FEATURES,
    context_features,
    session_histories,
    suggestion_features,
    vectorize,
)
from heedls.server.events import SuggestionEvent

from tests.unit.test_acceptance_data import make_events


def test_rows_have_exactly_the_declared_features() -> None:
    events = make_events(sessions=1, per_session=5)
    ctx = context_features(events[3], events[:3])
    row = suggestion_features(events[3], events[:3])
    # in the declared order, too: the model then reads a row's values() as its vector
    assert tuple(ctx) == CONTEXT_FEATURES
    assert tuple(row) == SUGGESTION_FEATURES
    assert all(isinstance(v, float) for v in row.values())
    assert len(set(SUGGESTION_FEATURES)) == len(SUGGESTION_FEATURES)


def test_the_stage_two_row_leaves_out_the_stage_one_stand_ins() -> None:
    from heedls.server.acceptance.features import STAGE1_ONLY_FEATURES, suggestion_row

    event = SuggestionEvent(id="a", session="s", ts=1.0, prefix="x = 1\ny = x + 1\nx = ", suggestion="2",
                            provider="local")
    ctx = context_features(event, [])
    assert set(STAGE1_ONLY_FEATURES) <= set(ctx) and ctx["ctx_repeat_log"] > 0
    row = suggestion_features(event, [], context=ctx)
    assert tuple(row) == SUGGESTION_FEATURES and not set(STAGE1_ONLY_FEATURES) & set(row)
    assert suggestion_row(ctx, {"sugg_chars_log": 1.0})["sugg_chars_log"] == 1.0


def test_future_events_do_not_change_a_row() -> None:
    events = make_events(sessions=1, per_session=30, seed=3)
    rng = random.Random(0)
    for i in (0, 5, 17, 29):
        past = events[:i]
        everything = list(events)
        rng.shuffle(everything)  # history in any order, including the future and the event itself
        assert suggestion_features(events[i], past) == suggestion_features(events[i], everything)


def test_own_outcome_and_decision_time_are_never_read() -> None:
    events = make_events(sessions=1, per_session=10, seed=4)
    event = events[7]
    flipped = dataclasses.replace(event, outcome="rejected" if event.outcome == "accepted" else "accepted",
                                  decision_ms=99_999.0, persisted_30s=True, persisted_600s=False)
    assert suggestion_features(event, events[:7]) == suggestion_features(flipped, events[:7])


def test_earlier_outcome_counts_only_once_decided() -> None:
    first = SuggestionEvent(id="a", session="s", ts=100.0, prefix="x = ", suggestion="1", shown=True,
                            outcome="accepted", decision_ms=5000.0)
    second = SuggestionEvent(id="b", session="s", ts=102.0, prefix="x = 1\n", suggestion="y = 2", shown=True)
    row = context_features(second, [first])  # decided at 105 s: not yet known at 102 s
    assert row["prev_accepted"] == 0.0 and row["has_prev"] == 1.0
    later = dataclasses.replace(second, ts=106.0)
    assert context_features(later, [first])["prev_accepted"] == 1.0


def test_deliberation_time_is_read_from_decided_events_only() -> None:
    """How long the user weighed the last suggestions: known once each was decided, never before."""
    def shown(i: int, ts: float, decision_ms: float) -> SuggestionEvent:
        return SuggestionEvent(id=f"e{i}", session="s", ts=ts, prefix="x = ", suggestion="1", shown=True,
                               outcome="rejected", decision_ms=decision_ms)

    history = [shown(i, 10.0 * i, 1000.0 * (i + 1)) for i in range(7)]  # 1 s .. 7 s, decided in time
    now = SuggestionEvent(id="now", session="s", ts=80.0, prefix="x = 1\n")
    row = context_features(now, history)
    assert row["prev_decision_s_log"] == pytest.approx(math.log1p(7.0))
    # the mean over the last five decisions (3 s .. 7 s), each on the same log scale
    assert row["recent_decision_s_log"] == pytest.approx(sum(math.log1p(s) for s in (3, 4, 5, 6, 7)) / 5)
    # still being weighed at request time (decided at 60 + 30 s > 80 s): not known yet
    pending = [*history[:6], shown(6, 60.0, 30_000.0)]
    assert context_features(now, pending)["prev_decision_s_log"] == pytest.approx(math.log1p(6.0))
    assert context_features(dataclasses.replace(now, id="first"), [])["recent_decision_s_log"] == 0.0


def test_empty_suffix_is_unknown_not_empty() -> None:
    base = SuggestionEvent(id="a", session="s", ts=1.0, prefix="value = compute(", suffix="")
    unknown = context_features(base, [])
    assert unknown["suffix_known"] == 0.0 and unknown["ws_after_cursor"] == 0.0
    known = context_features(dataclasses.replace(base, suffix=")\nprint(value)\n"), [])
    assert known["suffix_known"] == 1.0 and known["ws_after_cursor"] == 0.0
    at_end = context_features(dataclasses.replace(base, suffix="", extra={"suffix_known": True}), [])
    assert at_end["suffix_known"] == 1.0 and at_end["ws_after_cursor"] == 1.0


def test_syntactic_position() -> None:
    def ctx(prefix: str) -> dict[str, float]:
        return context_features(SuggestionEvent(id="a", session="s", ts=1.0, prefix=prefix), [])

    assert ctx("print(foo(a, ")["in_call"] == 1.0
    assert ctx("name = 'abc")["in_string"] == 1.0
    assert ctx("x = 1  # because")["in_comment"] == 1.0
    assert ctx("if ready:\n    ")["after_colon"] == 1.0
    inside = ctx("class A:\n    def f(self):\n        x = 1\n        ")
    assert inside["scope_function"] == 1.0 and inside["scope_class"] == 1.0
    assert ctx("x = [1, 2,\n")["in_list"] == 1.0


def test_suggestion_features_see_parse_and_unknown_names() -> None:
    prefix = "def total(items):\n    acc = 0\n    for item in items:\n        "
    good = suggestion_features(SuggestionEvent(id="a", session="s", ts=1.0, prefix=prefix,
                                               suggestion="acc += item"), [])
    bad = suggestion_features(SuggestionEvent(id="b", session="s", ts=1.0, prefix=prefix,
                                              suggestion="acc += frobnicate(item))"), [])
    assert good["parse_ok"] == 1.0 and bad["parse_ok"] == 0.0
    assert good["sugg_ident_known_frac"] == 1.0 and bad["sugg_ident_known_frac"] < 1.0
    assert bad["sugg_unbalanced_close"] == 1.0


def test_provider_extras_and_missing_fields() -> None:
    bare = SuggestionEvent(id="a", session="s", ts=1.0)  # no prefix, suffix, suggestion, latency
    row = suggestion_features(bare, [])
    assert row["latency_known"] == 0.0 and row["confidence_known"] == 0.0
    rich = SuggestionEvent(id="a", session="s", ts=1.0, prefix="x", suggestion="y", latency_ms=12.0,
                           extra={"confidence": 0.7, "logprob": -1.5, "typing_cps": 6.0})
    row = suggestion_features(rich, [])
    assert row["confidence"] == 0.7 and row["logprob"] == -1.5 and row["typing_known"] == 1.0


@pytest.mark.parametrize("odd", [float("nan"), float("inf"), -float("inf"), 10**400, "abc", [1], None])
def test_an_odd_provider_value_is_unknown_and_every_feature_stays_finite(odd: object) -> None:
    # a NaN in a row makes the model's score NaN, and a NaN score hides (NaN >= t is False)
    event = SuggestionEvent(id="a", session="s", ts=1.0, prefix="x = ", suggestion="y", latency_ms=12.0,
                            extra={"jedi_agree": odd, "confidence": odd, "logprob": odd, "typing_cps": odd})
    row = suggestion_features(event, [])
    assert all(math.isfinite(v) for v in row.values())
    assert row["jedi_known"] == row["confidence_known"] == row["logprob_known"] == row["typing_known"] == 0.0


def test_jedi_agreement_is_read_as_a_share_between_zero_and_one() -> None:
    for given, read in ((True, 1.0), (False, 0.0), (1, 1.0), (0.25, 0.25), (7, 1.0), (-2, 0.0)):
        event = SuggestionEvent(id="a", session="s", ts=1.0, prefix="x = ", suggestion="y", extra={"jedi_agree": given})
        row = suggestion_features(event, [])
        assert (row["jedi_known"], row["jedi_agree"]) == (1.0, read), given


def test_stored_rows_keep_only_their_finite_numbers() -> None:
    from heedls.server.acceptance.features import stored_features

    event = SuggestionEvent(id="a", session="s", ts=1.0, extra={"acceptance_features": {
        "context": {"prefix_chars_log": 2.5, "after_colon": True, "bad": float("nan"), "huge": 10**400, "text": "1"},
        "suggestion": {"sugg_chars_log": 1.0, "inf": float("inf")}}})
    assert stored_features(event, "suggestion") == {"prefix_chars_log": 2.5, "after_colon": 1.0, "sugg_chars_log": 1.0}


def test_session_histories_are_strictly_earlier_and_per_session() -> None:
    events = make_events(sessions=2, per_session=5)
    histories = session_histories(events)
    for event, history in zip(events, histories):
        assert all(h.session == event.session and h.ts < event.ts for h in history)
    matrix = vectorize([suggestion_features(e, h) for e, h in zip(events, histories)], SUGGESTION_FEATURES)
    assert matrix.shape == (10, len(SUGGESTION_FEATURES))


def test_scope_is_found_above_a_long_function_body() -> None:
    body = "".join(f"        step_{i} = {i}\n" for i in range(40))
    prefix = f"class Loader:\n    def load(self,\n             path):\n{body}        "
    row = context_features(SuggestionEvent(id="a", session="s", ts=1.0, prefix=prefix), [])
    assert row["scope_function"] == 1.0 and row["scope_class"] == 1.0
    top = context_features(SuggestionEvent(id="b", session="s", ts=1.0, prefix=f"{prefix}\nvalue = 1\n"), [])
    assert top["scope_function"] == 0.0 and top["scope_class"] == 0.0


def test_parse_ok_judges_the_statement_the_suggestion_completes() -> None:
    def parses(prefix: str, suggestion: str) -> float:
        event = SuggestionEvent(id="a", session="s", ts=1.0, prefix=prefix, suggestion=suggestion)
        return suggestion_features(event, [])["parse_ok"]

    loop = "def mean(values):\n    total = 0\n    for i in range(len("
    assert parses(loop, "values)):") == 1.0  # a block header, body still to come
    assert parses(loop, "values))):") == 0.0
    assert parses("if ready:\n    go()\nel", "se:\n    wait()") == 1.0
    call = "result = compute(\n    first,\n    "
    assert parses(call, "second)") == 1.0 and parses(call, "second") == 0.0


def test_a_suggestion_that_leaves_a_bracket_or_string_open_does_not_parse_without_asking_tree_sitter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from heedls.server.acceptance import features

    def row(prefix: str, suggestion: str) -> dict[str, float]:
        return suggestion_features(SuggestionEvent(id="a", session="s", ts=1.0, prefix=prefix, suggestion=suggestion), [])

    cases = [("for y in walk(", "path, dir_fd,"), ("x = [f(a", ") for a in b"), ("msg = ", "'unclosed")]
    parser = features._python_parser()
    assert all(parser.parse(f"{prefix}{suggestion}\n".encode()).root_node.has_error for prefix, suggestion in cases)
    asked = [row(prefix, suggestion) for prefix, suggestion in cases]
    assert all(r["parse_known"] == 1.0 and r["parse_ok"] == 0.0 for r in asked)  # as tree-sitter says

    class NoParser:
        def parse(self, source: bytes) -> None:
            raise AssertionError(f"tree-sitter asked about {source!r}")

    monkeypatch.setattr(features, "_python_parser", lambda: NoParser())
    assert [row(prefix, suggestion) for prefix, suggestion in cases] == asked
    assert all(r["sugg_complete_line"] == 0.0 for r in asked)


def test_open_after_continues_from_the_cursor() -> None:
    from heedls.server.acceptance.features import sugg_open_after

    assert sugg_open_after("x = f(a, [1, ", "2])", True) is False
    assert sugg_open_after("x = f(a, [1, ", "2]", True) is True
    assert sugg_open_after("x = 'abc", "def'", True) is False
    # inside a comment or string at the cursor: carried on from where it opened, brackets and all
    assert sugg_open_after("x = f(a,  # (note", "\n    b", True) is True
    assert sugg_open_after("x = f(a,  # (note", "\n    b)", True) is False
    assert sugg_open_after("x = f('a(", "b', c)", True) is False
    assert sugg_open_after('s = """doc (\nmore', ' text"""', True) is False


def test_the_lexer_says_where_the_open_string_or_comment_began() -> None:
    from heedls.server.acceptance.features import _lex

    assert _lex("x = f('a(", True)[5] == 6  # the offset of the open string or comment
    assert _lex("x = 1  # (", True, offset=10)[5] == 17
    assert _lex("x = f(a)", True)[5] == -1


def test_lexer_is_not_fooled_by_quotes_comments_and_escapes() -> None:
    from heedls.server.acceptance.features import _lex

    def _lex_tail(text: str, python: bool) -> tuple[bool, bool, str]:
        return _lex(text, python)[:3]  # (in string, in comment, open brackets)

    assert _lex_tail("f('(', \"[\", '''\n)''', # (\n", True) == (False, False, "(")
    assert _lex_tail("s = 'it\\'s (", True) == (True, False, "")
    assert _lex_tail("x = `a\n(", False) == (True, False, "")  # template literal spans lines
    assert _lex_tail("call(a, // (\n", False) == (False, False, "(")


def test_a_long_bracketed_statement_is_parsed_from_its_first_and_last_lines() -> None:
    items = "".join(f"    'key_{i}': [{i}, {{'n': ({i},\n        )}}],\n" for i in range(3))
    prefix = f"CONFIG = {{\n{items}    'last': call(\n        1,\n        "
    assert prefix.count("\n") > 4  # longer than the window: the middle is stood in for
    row = suggestion_features(SuggestionEvent(id="a", session="s", ts=1.0, prefix=prefix, suggestion="2),\n}"), [])
    assert row["parse_ok"] == 1.0
    bad = suggestion_features(SuggestionEvent(id="b", session="s", ts=1.0, prefix=prefix, suggestion="2)),\n}"), [])
    assert bad["parse_ok"] == 0.0


def test_the_parse_shortcut_only_flags_what_tree_sitter_rejects() -> None:
    """`_surely_invalid` spares tree-sitter's ~0.1 ms error recovery on prose; it must never say
    "does not parse" where tree-sitter would parse (checked once on 1M lines; here a sample)."""
    import sysconfig
    from pathlib import Path

    from heedls.server.acceptance.features import _python_parser, _surely_invalid

    parser = _python_parser()
    assert _surely_invalid("if 1:\n    The return value i is such that all e in a[:i] have e < x\n")
    assert _surely_invalid("x = 'unclosed\n")
    for fine in ("print(a, b)\n", "x = [i for i in items if i is not None]\n", "if'': x or''\n",
                 "s = 'a' 'b'\n", "import a as b\n", "print x\n", "`repr`\n", "x = 'a\\\nb'\n",
                 "match command:\n    case [x, y]:\n        pass\n", "type Alias = int\n"):
        assert not _surely_invalid(fine) or parser.parse(fine.encode()).root_node.has_error, fine
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    flagged = 0
    for name in ("argparse.py", "bisect.py", "textwrap.py", "enum.py", "tarfile.py"):
        for line in (stdlib / name).read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            text = ("if 1:\n" if line[:1] in " \t" else "") + line + "\n"
            if _surely_invalid(text):
                flagged += 1
                assert parser.parse(text.encode()).root_node.has_error, text
    assert flagged > 300  # the docstrings' prose


def test_a_dict_entry_read_as_a_statement_fails_without_a_parse_as_tree_sitter_would_fail_it() -> None:
    """A dict opened above the lexed tail leaves its entries (`0x1f93: 'x',`) to be read as
    statements: no statement starts with a literal and a colon, tree-sitter rejects them too, and
    its error recovery on them is its slowest case, so they are answered before the parse."""
    import sysconfig
    from pathlib import Path

    from heedls.server.acceptance.features import _LITERAL_LEAD, _python_parser, _statement_parses, _tail_lex

    parser = _python_parser()
    for entry in ("0x1f93:'\\u1f23', 0x1f94:'y',", "'key': value,", 'r"a\\"b": 3', "1.5: x"):
        assert _LITERAL_LEAD.match(entry), entry
        assert parser.parse((entry + "\n").encode()).root_node.has_error, entry
    for statement in ("x: int = 1", "'s'.x: int", "(a): int = 3", "a[1]: int", "if 1:", "'''doc'''"):
        assert not _LITERAL_LEAD.match(statement), statement
    matched = 0
    for name in ("html/entities.py", "stringprep.py", "enum.py"):
        for line in (Path(sysconfig.get_paths()["stdlib"]) / name).read_text(encoding="utf-8").split("\n"):
            if _LITERAL_LEAD.match(line.strip()):
                matched += 1
                assert parser.parse((line.strip() + "\n").encode()).root_node.has_error, line
    assert matched > 2000  # html.entities' tables (checked once on all 6.9M lines of the stdlib and site-packages)

    state = _tail_lex("    0x1f92:'a',\n    ", True)
    assert _statement_parses(state, "0x1f93:'\\u1f23',") is False


def test_cuts_through_code_fail_without_a_parse_as_tree_sitter_fails_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """A suggestion written over the rest of a line leaves a closing bracket before a name
    (`max(corr))p.max(`), a stray or mismatched closer (`quer])]`), or two names side by side
    behind a keyword (`import LogisticRegressionfrom sklearn`): each is answered before the parse,
    and tree-sitter agrees (checked once on 7.5M lines and cuts of the stdlib and site-packages)."""
    from heedls.server.acceptance.features import (
        _python_parser,
        _statement_parses,
        _surely_invalid,
        _tail_lex,
    )

    parser = _python_parser()
    for cut in ("if 1:\n    pos = np.where(corr == np.max(corr))p.max(corr, axis=0) > 0.9)\n",
                "if 1:\n    pos = np.where(corr == np.max(corr))    idx = np.argsort(corr)\n",
                "from sklearn.linear_model import LogisticRegressionfrom sklearn.linear_model import X\n",
                "if 1:\n    return Falsexcept AssertionError:\n        pass\n",
                "if 1:\n    serialize out of range ``float`` values (``nan``, ``inf``)\n"):
        assert _surely_invalid(cut), cut
        assert parser.parse(cut.encode()).root_node.has_error, cut
    for fine in ("x = [i for i in f(x)if i]\n", "x = 1 if f(x)else 2\n", "print (x) if y else z\n",
                 "exec (x) in y\n", "f(x) not in y\n", "y = `x`\n", "with open(f) as g:\n    pass\n",
                 "except (A, B) as e:\n    pass\n", "s = '`'\n", "x = a[0]is None\n"):
        assert not _surely_invalid(fine) or parser.parse(fine.encode()).root_node.has_error, fine

    class NoParser:
        def parse(self, source: bytes) -> None:
            raise AssertionError(f"tree-sitter asked about {source!r}")

    # a bracket inside a backtick string is tree-sitter's to judge, whatever the lexer thought
    assert _statement_parses(_tail_lex("x = ", True), "`)`", stray=True) is True
    import heedls.server.acceptance.features as features

    state = _tail_lex("print(retriever.get_least_k_similar_vectors(", True)
    for stray in ("quer])]", "x]", "a)))"):
        assert parser.parse(f"print(retriever.get_least_k_similar_vectors({stray}\n".encode()).root_node.has_error
    assert features._sugg_lex("print(f(", "quer])]", True) == (False, True)  # (left open, stray)
    assert features._sugg_lex("print(f(", "q))", True) == (False, False)
    monkeypatch.setattr(features, "_python_parser", lambda: NoParser())
    for stray in ("quer])]", "x]", "a)))"):
        assert _statement_parses(state, stray, stray=True) is False


def test_the_alphanumeric_share_counts_as_str_isalnum_does() -> None:
    from heedls.server.acceptance.features import _alnum_count

    for text in ("", "a_b-c 1.5\n", "é٣x", "\x00\x7f~Zz09", "naïve ≠ 2"):
        assert _alnum_count(text) == sum(map(str.isalnum, text)), text


def test_history_is_the_last_64_earlier_events_as_the_engine_passes_them() -> None:
    from heedls.server.events import HISTORY_WINDOW

    events = make_events(sessions=1, per_session=100, seed=3)
    histories = session_histories(events)
    assert HISTORY_WINDOW == 64
    assert [len(h) for h in histories[:3]] == [0, 1, 2] and len(histories[99]) == 64
    assert histories[99] == sorted(events, key=lambda e: e.ts)[35:99]


def test_the_live_window_and_the_one_training_reads_are_the_same_events() -> None:
    import random

    from heedls.server.events import HISTORY_WINDOW, HistoryWindow, history_window

    rng = random.Random(4)
    for share in (0.0, 0.3, 0.9, 1.0):  # of requests the gate skipped or hid
        live, seen = HistoryWindow(), []
        for i in range(400):
            gated = rng.random() < share
            event = SuggestionEvent(id=f"e{i}", session="s", ts=float(i), prefix="x",
                                    gate={"decision": rng.choice(["skipped", "hidden"]) if gated else
                                          rng.choice(["shown", "empty"])})
            assert live.events() == history_window(seen)
            live.append(event)
            seen.append(event)
        window = history_window(seen)
        passed = [e for e in seen if e.gate["decision"] in ("shown", "empty")]
        assert [e for e in window if e in passed] == passed[-HISTORY_WINDOW:]
        assert sum(e not in passed for e in window) <= HISTORY_WINDOW
        if share == 0.0:
            assert window == seen[-HISTORY_WINDOW:]  # data without gate decisions: as before


def test_the_users_taste_is_read_from_their_last_twenty_decisions() -> None:
    from heedls.server.acceptance.features import RECENT_TASTE

    def decided(i: int, text: str, outcome: str) -> SuggestionEvent:
        return SuggestionEvent(id=f"e{i}", session="s", ts=float(i), prefix="x = ", suggestion=text, shown=True,
                               outcome=outcome, decision_ms=100.0)

    turned_down = decided(0, "print(secret)", "rejected")
    fillers = [decided(i, f"value_{i}", "accepted") for i in range(1, 40)]
    now = SuggestionEvent(id="now", session="s", ts=100.0, prefix="x = ", suggestion="print(secret)")
    recent = [turned_down, *fillers[-(RECENT_TASTE - 1):]]  # the rejection is the 20th-last decision
    row = suggestion_features(now, [dataclasses.replace(h, ts=float(k)) for k, h in enumerate(recent)])
    assert row["sugg_rejected_before"] == 1.0 and row["sugg_shown_before"] == 1.0
    old = [turned_down, *fillers]  # 39 decisions since: the user's taste has moved on
    row = suggestion_features(now, old)
    assert row["sugg_rejected_before"] == 0.0 and row["sugg_shown_before"] == 0.0
    # the lengths compared with are those of the last 20 accepted suggestions (all "value_NN" here)
    assert row["len_vs_accepted"] == pytest.approx(math.log1p(len("print(secret)")) - math.log1p(len("value_20")))


def test_text_repeated_before_the_cursor_is_measured_for_the_local_provider_only() -> None:
    """How long a stretch ending at the cursor already occurs in the 6,000 characters before it:
    what the local provider's retrieval can continue. LLM providers get 0."""
    from heedls.server.acceptance.features import REPEAT_WINDOW, _repeat_before

    def repeat(prefix: str, provider: str | None = "local") -> float:
        return context_features(SuggestionEvent(id="a", session="s", ts=1.0, prefix=prefix, provider=provider),
                                [])["ctx_repeat_log"]

    seen = "self.assertEqual(result.status, 200)\n    self.assertEqual(result.sta"
    assert _repeat_before(seen) == 16  # "Equal(result.sta" occurs above; the 32 characters ending here do not
    assert repeat(seen) == math.log1p(16)
    assert repeat(seen, "openai") == 0.0 and repeat(seen, None) == 0.0
    assert repeat("def fresh_name(a, b):\n    return a ** b + zeta") == 0.0
    assert _repeat_before("abc") == 0  # shorter than the shortest stretch
    assert _repeat_before("abcd") == 0  # the cursor's own occurrence does not count
    far = "tail_marker" + "x = 1\n" * (REPEAT_WINDOW // 6 + 10) + "tail_marker"
    assert _repeat_before(far) == 0  # only the last REPEAT_WINDOW characters are searched


def test_a_runaway_suggestion_is_read_up_to_a_bound() -> None:
    from heedls.server.acceptance.features import SUGGESTION_CHARS

    head = "value = compute(items)\n" * (SUGGESTION_CHARS // 23 + 1)
    huge = SuggestionEvent(id="a", session="s", ts=1.0, prefix="x = 1\n", suggestion=head + "y" * 2_000_000)
    bounded = SuggestionEvent(id="a", session="s", ts=1.0, prefix="x = 1\n", suggestion=head[:SUGGESTION_CHARS])
    assert suggestion_features(huge, []) == suggestion_features(bounded, [])
