"""The one feature extractor of the acceptance cascade (training, evaluation and serving share it).

`context_features(event, history)` sees what is known *before* a suggestion is requested (stage 1);
`suggestion_features(event, history)` adds what is known once the suggestion is in hand (stage 2).
Both return plain dicts of floats; `CONTEXT_FEATURES` / `SUGGESTION_FEATURES` fix the order used to
vectorise them, so a model file names the features it was trained on.

Leakage rules (tested): only events strictly earlier than `event.ts` in `history` are used, and an
earlier event's outcome counts only if it was decided before `event.ts` (shown at `ts`, decided
`decision_ms` later). The current event's `outcome`, `decision_ms` and persistence are never read.

Unknown is not empty: a `suffix` of "" cannot be told apart from "not logged" (CUPS logs none), so
suffix features are only set when the suffix is a non-empty string (or `extra["suffix_known"]` says
so), and `suffix_known` tells the model which case it is in. Unknown values are 0 with a flag.
"""

from __future__ import annotations

import builtins
import keyword
import math
import operator
import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from heedls.server.events import HISTORY_WINDOW, ROWS_KEY, SuggestionEvent, history_window, is_gated

# How much of the prefix tail the syntactic features look at: enough for the enclosing statement
# and block, small enough to parse in tens of microseconds.
TAIL_LINES = 12
TAIL_CHARS = 800
# The suggestion text the stage-2 features read: LLM answers stay far below (cups-dev's longest
# Copilot suggestion is 636 characters), and a runaway answer must not cost the gate a second (a
# 2 MB suggestion took 0.3-1.2 s per decision; this much, a few ms).
SUGGESTION_CHARS = 8000
SCOPE_LINES = 80
_STAND_IN = {"(": "f(", "[": "a[", "{": "{"}
RECENT_DECISIONS = 10
# The user's taste (texts turned down, lengths taken and turned down: their last 20 decisions; texts
# shown: their last 20 events) rather than the whole 64-event window: recent taste predicts the next
# decision better (cups-dev, 5 tree seeds: AUC 0.747 over 64 -> 0.752 over 20; 0.747 over 10) and it
# is a third of the work on every request.
RECENT_TASTE = 20
RECENT_DECISION_TIMES = 5
_MAX_GAP_S = 3600.0

_LAST_CHAR_CLASSES = ("alnum", "space", "newline", "open", "close", "colon", "dot", "comma", "operator",
                      "quote", "other")
_OPEN = "([{"
_CLOSE = ")]}"
_OPERATORS = set("=+-*/<>!&|%^~@")
_CONTROL_KW = ("if ", "elif ", "else", "for ", "while ", "try", "except", "finally", "with ", "async ")
_BLOCK_KW = ("def ", "async ", "class ", "if ", "elif ", "else", "for ", "while ", "with ", "try", "except",
             "finally", "match ", "case ")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_RE = re.compile(r"[^=!<>]=[^=]")
_TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S")
_BUILTIN_NAMES = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
_JS_KEYWORDS = frozenset(["var", "let", "const", "function", "return", "if", "else", "for", "while", "do", "switch", "case", "break", "continue", "new", "this", "typeof", "instanceof", "null", "undefined", "true", "false", "class", "extends", "import", "export", "from", "default", "try", "catch", "finally", "throw", "async", "await", "of", "in", "yield", "delete", "void", "console"])

CONTEXT_FEATURES: tuple[str, ...] = (
    "prefix_chars_log", "prefix_lines_log", "line_chars_log", "line_stripped_chars_log", "at_line_start",
    "indent_level", "indent_delta", "blank_lines_before",
    "suffix_known", "ws_after_cursor", "suffix_line_chars_log", "rel_position",
    *(f"last_{name}" for name in _LAST_CHAR_CLASSES),
    "in_string", "in_comment", "bracket_depth", "in_call", "in_list",
    "after_colon", "line_is_comment", "prev_line_comment", "line_kw_def", "line_kw_import", "line_kw_return",
    "line_kw_control", "line_has_assign",
    "scope_function", "scope_class",
    "language_python", "provider_local", "ctx_repeat_log",
    "has_prev", "dt_prev_log", "prev_accepted", "prev_rejected", "dt_prev_decision_log",
    "recent_accept_rate", "decided_log", "same_place_as_prev", "prev_decision_s_log", "recent_decision_s_log",
    "typing_known", "typing_cps_log",
)

SUGGESTION_ONLY_FEATURES: tuple[str, ...] = (
    "sugg_chars_log", "sugg_lines_log", "sugg_tokens_log", "sugg_first_line_chars_log", "sugg_multiline",
    "sugg_starts_newline", "sugg_is_comment", "sugg_comment_frac", "sugg_alnum_frac", "sugg_mid_word",
    "sugg_bracket_net", "sugg_unbalanced_close", "sugg_closes_context",
    "sugg_repeated_lines", "sugg_token_distinct", "sugg_lines_in_prefix", "sugg_ident_known_frac",
    "sugg_ident_unknown_log", "sugg_defines", "sugg_suffix_dup",
    "parse_known", "parse_ok",
    "latency_known", "latency_log",
    "confidence_known", "confidence", "logprob_known", "logprob",
    "jedi_known", "jedi_agree",
    "sugg_rejected_before", "sugg_shown_before",
    "sugg_complete_line", "len_vs_accepted", "len_vs_rejected", "sim_rejected", "sim_accepted",
)

# Stage-1 stand-ins for what the suggestion itself shows at stage 2: not in the stage-2 row. (The
# repeated text before the cursor ranks the local provider's requests, AUC +0.03 on three replays,
# but added nothing to the suggestion stage's, whose rows see the suggestion and its confidence.)
STAGE1_ONLY_FEATURES: tuple[str, ...] = ("ctx_repeat_log",)

SUGGESTION_FEATURES: tuple[str, ...] = (tuple(n for n in CONTEXT_FEATURES if n not in STAGE1_ONLY_FEATURES)
                                        + SUGGESTION_ONLY_FEATURES)

STAGE_FEATURES: dict[str, tuple[str, ...]] = {"context": CONTEXT_FEATURES, "suggestion": SUGGESTION_FEATURES}

# The gate stores its decision-time rows under this extra key ({"context": {...}, "suggestion":
# {suggestion-only features}}); evaluation falls back to them when an event carries no code text.
FEATURES_KEY = ROWS_KEY


def stored_features(event: SuggestionEvent, stage: str) -> dict[str, float] | None:
    """Decision-time rows kept on the event by the gate (e.g. in a `nocode` export), or None."""
    store = event.extra.get(FEATURES_KEY) if event.extra else None
    if not isinstance(store, dict) or not isinstance(store.get("context"), dict):
        return None
    row = _finite_values(store["context"])
    if stage == "suggestion":
        extra = store.get("suggestion")
        if not isinstance(extra, dict):
            return None
        row.update(_finite_values(extra))
    return row


def _finite_values(stored: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a stored row (a file from elsewhere may hold NaN or a 400-digit int:
    that feature is then unknown, 0, as a missing one)."""
    out: dict[str, float] = {}
    for key, value in stored.items():
        if not isinstance(value, (int, float)):
            continue
        number = float(value) if isinstance(value, bool) else _flt(value)
        if number is not None:
            out[key] = number
    return out


def _log(x: float) -> float:
    return math.log1p(max(0.0, x))


def _flt(value: Any) -> float | None:
    """A finite float from a provider-supplied extra, or None."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond any float
        return None
    return out if math.isfinite(out) else None


def _last_char_class(prefix: str) -> str:
    if not prefix:
        return "newline"
    ch = prefix[-1]
    if ch == "\n":
        return "newline"
    if ch.isalnum() or ch == "_":
        return "alnum"
    if ch in " \t":
        return "space"
    if ch in _OPEN:
        return "open"
    if ch in _CLOSE:
        return "close"
    if ch == ":":
        return "colon"
    if ch == ".":
        return "dot"
    if ch == ",":
        return "comma"
    if ch in _OPERATORS:
        return "operator"
    if ch in "'\"`":
        return "quote"
    return "other"


_OPENER_OF = {")": "(", "]": "[", "}": "{"}
_SIGNIFICANT_PY = re.compile(r"""#|'''|\"\"\"|['"()\[\]{}]""")
_SIGNIFICANT_JS = re.compile(r"//|['\"`()\[\]{}]")
# Where a string opened by each quote ends: an escape pair is skipped, a plain quote ends at the
# line end (except JavaScript's template literals), a triple quote only at its closing triple.
_STRING_END = {
    ("'", True): re.compile(r"\\[\s\S]|'|\n"), ('"', True): re.compile(r'\\[\s\S]|"|\n'),
    ("'''", True): re.compile(r"\\[\s\S]|'''"), ('"""', True): re.compile(r'\\[\s\S]|"""'),
    ("'", False): re.compile(r"\\[\s\S]|'|\n"), ('"', False): re.compile(r'\\[\s\S]|"|\n'),
    ("`", False): re.compile(r"\\[\s\S]|`"),
}


# What `_lex` returns, as a plain tuple (it runs several times per request): in a string at the
# end, in a comment at the end, the open brackets (outermost first), their offsets, whether a
# closing bracket closed nothing or another kind of bracket, and the offset of the string or
# comment still open at the end (-1: none).
Lexed = tuple[bool, bool, str, list[int], bool, int]


def _lex(text: str, python: bool, stack_before: str = "", where_before: Sequence[int] = (),
         offset: int = 0) -> Lexed:
    """Scan `text` for where it ends (in a string, in a comment, which brackets are open and
    where), starting with the brackets of `stack_before` open (at `where_before`; offsets are
    reported plus `offset`).

    A tiny lexer rather than tree-sitter: at the cursor the code is incomplete, and the error
    recovery of a parser says little about whether we are inside a string or a call. Regex-driven
    (it jumps from one significant character to the next) because it runs on every request.
    """
    significant = _SIGNIFICANT_PY if python else _SIGNIFICANT_JS
    stack: list[str] = list(stack_before)
    where: list[int] = list(where_before) if len(where_before) == len(stack_before) else [-1] * len(stack_before)
    stray = False
    pos, n = 0, len(text)
    while pos < n:
        m = significant.search(text, pos)
        if m is None:
            break
        tok, i = m.group(), m.start()
        if tok in _OPEN:
            stack.append(tok)
            where.append(i + offset)
            pos = i + 1
        elif tok in _CLOSE:
            if stack:
                if stack.pop() != _OPENER_OF[tok]:
                    stray = True
                where.pop()
            else:
                stray = True
            pos = i + 1
        elif tok == "#" or tok == "//":
            j = text.find("\n", i)
            if j < 0:
                return False, True, "".join(stack), where, stray, i + offset
            pos = j + 1
        else:
            end = _STRING_END[(tok, python)]
            body = i + len(tok)
            while True:
                e = end.search(text, body)
                if e is None:
                    return True, False, "".join(stack), where, stray, i + offset
                if e.group()[0] != "\\":
                    pos = e.end()
                    break
                body = e.end()
    return False, False, "".join(stack), where, stray, -1


@lru_cache(maxsize=1)
def _python_parser() -> Any:
    try:
        import tree_sitter
        import tree_sitter_python

        return tree_sitter.Parser(tree_sitter.Language(tree_sitter_python.language()))
    except Exception:  # pragma: no cover - tree-sitter is a dependency; stay usable without it
        return None


class TailLex(NamedTuple):
    tail: str
    in_string: bool
    in_comment: bool
    stack: str  # brackets open at the cursor, outermost first
    open_at: tuple[int, ...]  # their offsets in `tail`
    line_start: int  # offset of the cursor's line in `tail`
    line_stack: str | None  # brackets open where that line starts (None: it starts in a string)
    line_open_at: tuple[int, ...]
    open_from: int  # offset in `tail` of the string or comment open at the cursor (-1: none)


@lru_cache(maxsize=16)
def _tail_lex(prefix: str, python: bool) -> TailLex:
    """The prefix's tail and the lexer's state at the start of the cursor's line and at the cursor.
    Memoised: both gate stages of one request ask for the same prefix object, whose hash Python
    keeps, so the second call is free."""
    tail = _tail(prefix)
    line_start = tail.rfind("\n") + 1
    in_string, in_comment, stack, where, _, open_from = _lex(tail[:line_start], python)
    if in_string or in_comment:  # the line starts inside a multi-line string
        in_string, in_comment, end_stack, end_where, _, open_from = _lex(tail, python)
        return TailLex(tail, in_string, in_comment, end_stack, tuple(end_where), line_start, None, (), open_from)
    line_stack, line_where = stack, tuple(where)
    in_string, in_comment, stack, where, _, open_from = _lex(tail[line_start:], python, stack, where, line_start)
    return TailLex(tail, in_string, in_comment, stack, tuple(where), line_start, line_stack, line_where, open_from)


def _tail(prefix: str) -> str:
    tail = prefix[-TAIL_CHARS:]
    cut = tail.split("\n")
    if len(cut) > TAIL_LINES:
        cut = cut[-TAIL_LINES:]
    elif len(prefix) > TAIL_CHARS and len(cut) > 1:
        cut = cut[1:]  # drop the partial first line
    return "\n".join(cut)


def _enclosing(lines: Sequence[str], last: int) -> tuple[float, float]:
    """(inside a function, inside a class) for the code ending at line `last`, from indentation.

    Walks up at most SCOPE_LINES lines: each less-indented line that opens a block is an enclosing
    header. Less-indented lines that open nothing (continuations, docstring text) are skipped.
    A parse of the tail would need the whole function above the cursor (a 12-line tail misses the
    `def` of any longer function) and costs ten times more at the p95.
    """
    if last < 0:
        return 0.0, 0.0
    line = lines[last]
    body = line.lstrip()
    limit = len(line) - len(body)
    in_function = float(body.startswith(("def ", "async def ")))
    in_class = float(body.startswith("class "))
    for k in range(last - 1, max(-1, last - SCOPE_LINES), -1):
        if limit == 0 or in_function and in_class:
            break
        line = lines[k]
        body = line.lstrip()
        if not body or len(line) - len(body) >= limit or not body.startswith(_BLOCK_KW):
            continue
        limit = len(line) - len(body)
        if body.startswith(("def ", "async def ")):
            in_function = 1.0
        elif body.startswith("class "):
            in_class = 1.0
    return in_function, in_class


def _statement_parses(state: TailLex, sugg: str, left_open: bool = False, stray: bool = False) -> bool | None:
    """Does the statement the suggestion completes parse (tree-sitter)?

    Parsed on its own, small and fast: the cursor's line plus the suggestion, after the first line
    of the bracket still open where that line starts (`def f(`, `x = call(`) and stand-ins (`f(`,
    `a[`, `{`) for the brackets opened in between; an indented statement inside an `if 1:`, an
    `else`/`except` after a stub opener, a trailing block header with a `pass` body.
    `left_open`: the lexer found a bracket or string still open after the suggestion, so the
    statement cannot parse (and tree-sitter's recovery from the missing closer is slow).
    `stray`: the lexer found a closing bracket in the suggestion that closes nothing or another
    kind of bracket: it cannot parse either, unless tree-sitter reads that bracket as part of a
    string the lexer does not know (a backtick string, a triple quote cut by the tail), so those
    texts still go to tree-sitter.
    """
    parser = _python_parser()
    if parser is None or state.line_stack is None:
        return None
    if left_open:  # a bracket or string the suggestion leaves open: an error, and a slow one to recover from
        return False
    tail, open_at = state.tail, state.line_open_at
    head = tail[state.line_start:]
    if state.line_stack:
        first = tail.rfind("\n", 0, open_at[0]) + 1
        stand_ins = "".join(_STAND_IN[b] for b in state.line_stack[1:])
        head = tail[first: open_at[0] + 1] + stand_ins + "\n" + head
    statement = (head + sugg).rstrip()
    first_line = statement.split("\n", 1)[0]
    keyword = first_line.lstrip()
    if _LITERAL_LEAD.match(keyword):
        return False
    indent = first_line[: len(first_line) - len(keyword)]
    opener = ""
    if keyword.startswith(("elif ", "elif(", "else")):
        opener = f"{indent}if 1:\n{indent}    pass\n"
    elif keyword.startswith(("except", "finally")):
        opener = f"{indent}try:\n{indent}    pass\n"
    last = statement.rsplit("\n", 1)[-1]
    closer = ""
    if last.split("#", 1)[0].rstrip().endswith(":"):
        closer = "\n" + last[: len(last) - len(last.lstrip())] + "    pass"
    text = ("if 1:\n" if indent else "") + opener + statement + closer + "\n"
    if stray and "`" not in text and '"""' not in text and "'''" not in text:
        return False
    if _surely_invalid(text):
        return False
    return not parser.parse(text.encode("utf-8", "replace")).root_node.has_error


# String literals and comments (a literal becomes one token), then two plain names side by side.
# tree-sitter-python reads a backtick pair as a string too (Python 2's repr): one without escapes
# on one line is a literal here; any other backtick leaves the text to tree-sitter.
_LITERAL_RE = re.compile(r"""(?:(?<!\w)[rRbBuUfF]{1,2})?(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|#[^\n]*|`[^`\\\n]*`""")
_NAME_PAIR_RE = re.compile(r"(?<![\w.])([A-Za-z_]\w*)(?=[ \t]+([A-Za-z_]\w*)(?!\w))")
# A closing bracket, then a plain name (`f(x) y`, `a[i]b`): a cut through code, as a suggestion
# written over the rest of a line leaves it.
_CLOSER_NAME_RE = re.compile(r"[)\]}][ \t]*([A-Za-z_]\w*)")
# Words that may stand next to a name in tree-sitter-python's grammar (keywords, soft keywords, and
# the Python 2 `print`/`exec` statements it still parses).
_JOINING_WORDS = frozenset(
    "False None True and as assert async await break class continue def del elif else except exec finally for "
    "from global if import in is lambda match case nonlocal not or pass print raise return try type while with "
    "yield".split())


# A statement that starts with a number or string and a colon (`0x1f93: 'x',`, `'key': value`): a
# dict's entries read as statements, when the dict opened above the lexed tail. No statement can
# start so (an annotation's target is a name, attribute, subscript or parenthesised), and
# tree-sitter's error recovery on such lines is its slowest case (~30 µs). tree-sitter finds an
# error in all 257k such lines of the stdlib and site-packages.
_LITERAL_LEAD = re.compile(r"""(?:\d[\w.]*|[rRbBuUfF]{0,2}(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"))[ \t]*:""")


def _surely_invalid(text: str) -> bool:
    """True only when `text` cannot parse: outside literals and comments, two plain names side by
    side (`value i`: prose), a closing bracket followed by a plain name (`f(x)y`), or a quote that
    does not close on its line. It costs ~3 µs where tree-sitter's error recovery on a line of
    prose costs ~100 µs, and it is a shortcut, not a new rule: tree-sitter also finds an error in
    every statement it flags, checked on 7.5M lines of the stdlib and site-packages and random cuts
    of them (936k flagged) and on every statement of the benchmarks and data sets
    (tests/unit/test_acceptance_features.py keeps a sample). Triple quotes, backticks other than one-line pairs (Python 2 repr, which tree-sitter
    reads as a string) and backslash continuations are left to tree-sitter."""
    if '"""' in text or "'''" in text:
        return False
    code = (_LITERAL_RE.sub(" 0 ", text) if "'" in text or '"' in text or "#" in text or "`" in text
            else text)
    if "`" in code:
        return False
    if '"' in code or "'" in code:
        return "\\\n" not in text
    for pair in _NAME_PAIR_RE.finditer(code):
        if pair.group(1) not in _JOINING_WORDS and pair.group(2) not in _JOINING_WORDS:
            return True
    for after in _CLOSER_NAME_RE.finditer(code):
        if after.group(1) not in _JOINING_WORDS:
            return True
    return False


# The bytes that are not ASCII letters or digits: deleting them leaves what str.isalnum counts.
_NOT_ALNUM = bytes(c for c in range(128) if not chr(c).isalnum())


def _alnum_count(text: str) -> int:
    """How many characters of `text` are alphanumeric (str.isalnum): for ASCII text, bytes.translate
    (0.4 µs on 636 characters, where counting in Python took 11)."""
    if text.isascii():
        return len(text.encode("ascii").translate(None, _NOT_ALNUM))
    return sum(map(str.isalnum, text))


def _is_python(event: SuggestionEvent) -> bool:
    lang = (event.language or "python").lower()
    return lang in ("python", "py", "python3")


def _indent(line: str) -> int:
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


def _suffix_known(event: SuggestionEvent) -> bool:
    flag = event.extra.get("suffix_known") if event.extra else None
    if isinstance(flag, bool):
        return flag and event.suffix is not None
    return bool(event.suffix)


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _mentioned(name: str, *texts: str) -> bool:
    """Does identifier `name` occur as a whole word in one of `texts`? (find() over the text is
    an order of magnitude cheaper than tokenising a 6,000-character prefix on every request)."""
    size = len(name)
    for text in texts:
        i = text.find(name)
        hits = 0
        while i >= 0:
            j = i + size
            if (i == 0 or not _word_char(text[i - 1])) and (j >= len(text) or not _word_char(text[j])):
                return True
            hits += 1
            if hits > 32:  # a name inside many longer ones: let the regex engine look
                if _whole_word(name).search(text, i + 1):
                    return True
                break
            i = text.find(name, i + 1)
    return False


@lru_cache(maxsize=1024)
def _whole_word(name: str) -> re.Pattern[str]:
    """`name` not inside a longer word. The lookbehind comes after the name, so the pattern starts
    with a literal and the regex engine jumps between its occurrences: 40x faster on 8,000
    characters than `(?<!\\w)name(?!\\w)`, which tries every position (~100 µs)."""
    word = re.escape(name)
    return re.compile(rf"{word}(?<!\w{word})(?!\w)")


def _has_line(text: str, line: str) -> bool:
    """Is `line` (stripped) one of the lines of `text`, up to surrounding whitespace?"""
    i = text.find(line)
    hits = 0
    while i >= 0 and hits < 32:
        start = text.rfind("\n", 0, i) + 1
        end = text.find("\n", i + len(line))
        if not text[start:i].strip() and not text[i + len(line): end if end >= 0 else len(text)].strip():
            return True
        hits += 1
        i = text.find(line, i + 1)
    return False


SessionView = tuple[list[SuggestionEvent], list[SuggestionEvent]]


def session_view(event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> SessionView:
    """(events strictly before `event`, oldest first; those of them decided by `event.ts`).
    Both stages of one decision share it: compute once, pass as `view`."""
    ts, own = event.ts, event.id
    earlier = [h for h in history if h.ts < ts and h.id != own]
    earlier.sort(key=_BY_TS)  # linear when already in time order, as the server's history is
    # Decided at shown time + decision_ms; without timing, decided (the server passes only
    # events already decided).
    decided = [h for h in earlier if h.outcome in _DECIDED
               and (h.decision_ms is None or h.ts + h.decision_ms / 1000.0 <= ts)]
    return earlier, decided


_BY_TS = operator.attrgetter("ts")
_SUGGESTION = operator.attrgetter("suggestion")
_DECIDED = ("accepted", "rejected")


def context_features(event: SuggestionEvent, history: Sequence[SuggestionEvent],
                     view: SessionView | None = None) -> dict[str, float]:
    prefix = event.prefix or ""
    python = _is_python(event)
    f: dict[str, float] = {}
    lines = prefix.split("\n")
    line = lines[-1]
    stripped = line.strip()
    f["prefix_chars_log"] = _log(len(prefix))
    f["prefix_lines_log"] = _log(len(lines))
    f["line_chars_log"] = _log(len(line))
    f["line_stripped_chars_log"] = _log(len(stripped))
    f["at_line_start"] = float(not stripped)
    prev_at = len(lines) - 2
    while prev_at >= 0 and not lines[prev_at].strip():
        prev_at -= 1
    prev_nonblank = lines[prev_at] if prev_at >= 0 else ""
    blank = len(lines) - 2 - prev_at
    f["indent_level"] = min(_indent(line), 40) / 4.0
    f["indent_delta"] = max(-3.0, min(3.0, (_indent(line) - _indent(prev_nonblank)) / 4.0)) if prev_nonblank else 0.0
    f["blank_lines_before"] = float(min(blank, 3))

    known = _suffix_known(event)
    suffix = event.suffix or "" if known else ""
    rest_of_line = suffix.split("\n", 1)[0]
    f["suffix_known"] = float(known)
    f["ws_after_cursor"] = float(known and not rest_of_line.strip())
    f["suffix_line_chars_log"] = _log(len(rest_of_line.strip())) if known else 0.0
    f["rel_position"] = len(prefix) / (len(prefix) + len(suffix)) if known and (prefix or suffix) else 0.0

    last = _last_char_class(prefix)
    for name in _LAST_CHAR_CLASSES:
        f[f"last_{name}"] = float(name == last)

    state = _tail_lex(prefix, python)
    in_string, in_comment, stack = state.in_string, state.in_comment, state.stack
    f["in_string"] = float(in_string)
    f["in_comment"] = float(in_comment)
    f["bracket_depth"] = float(min(len(stack), 4))
    f["in_call"] = float(stack.endswith("("))
    f["in_list"] = float(stack.endswith(("[", "{")))
    f["after_colon"] = float(stripped.endswith(":") or (not stripped and prev_nonblank.rstrip().endswith(":")))
    comment_mark = "#" if python else "//"
    f["line_is_comment"] = float(stripped.startswith(comment_mark))
    f["prev_line_comment"] = float(prev_nonblank.strip().startswith(comment_mark))
    f["line_kw_def"] = float(stripped.startswith(("def ", "class ", "async def ", "function ")))
    f["line_kw_import"] = float(stripped.startswith(("import ", "from ")) or "require(" in stripped)
    f["line_kw_return"] = float(stripped.startswith(("return", "yield")))
    f["line_kw_control"] = float(stripped.startswith(_CONTROL_KW))
    f["line_has_assign"] = float(bool(_ASSIGN_RE.search(stripped)))

    scope_fn, scope_cls = _enclosing(lines, prev_at) if python else (0.0, 0.0)
    f["scope_function"] = scope_fn
    f["scope_class"] = scope_cls
    f["language_python"] = float(python)
    # Who writes the suggestions changes what gets accepted (the embedded model-free provider vs an
    # LLM): lets one shipped model keep the replay's and the humans' (Copilot's) regimes apart.
    local = (event.provider or "") == "local"
    f["provider_local"] = float(local)
    f["ctx_repeat_log"] = _log(_repeat_before(prefix)) if local else 0.0

    _history_features(f, event, view if view is not None else session_view(event, history))
    cps = _flt(event.extra.get("typing_cps")) if event.extra else None
    f["typing_known"] = float(cps is not None)
    f["typing_cps_log"] = _log(cps) if cps is not None else 0.0
    return f


REPEAT_WINDOW = 6000  # the server's default prefix (max_prefix_chars): longer prefixes cost no more
_REPEAT_LENGTHS = (4, 8, 16, 32)


def _repeat_before(prefix: str) -> int:
    """The longest of 4, 8, 16, 32 characters ending at the cursor that already occur in the last
    REPEAT_WINDOW characters before it (0: not even 4). The local provider completes by retrieval
    and n-grams over the same code, so repeated text is what it can continue; with LLMs (cups-dev)
    it ranked nothing, hence a feature of the local provider only. A miss scans the whole window:
    ~4 µs at the p50, ~9 at the p95 on the bench's 6,000-character prefixes."""
    n = len(prefix)
    start = max(0, n - REPEAT_WINDOW)
    best = 0
    for k in _REPEAT_LENGTHS:  # each longer match implies the shorter ones: stop at the first miss
        if n <= k or prefix.rfind(prefix[-k:], start, n - 1) < 0:
            break
        best = k
    return best


def _history_features(f: dict[str, float], event: SuggestionEvent, view: SessionView) -> None:
    earlier, decided = view
    f["has_prev"] = float(bool(earlier))
    f["dt_prev_log"] = _log(min(event.ts - earlier[-1].ts, _MAX_GAP_S)) if earlier else 0.0
    if decided:
        prev = decided[-1]
        f["prev_accepted"] = float(prev.outcome == "accepted")
        f["prev_rejected"] = float(prev.outcome == "rejected")
        done = prev.ts + (prev.decision_ms or 0.0) / 1000.0
        f["dt_prev_decision_log"] = _log(min(max(event.ts - done, 0.0), _MAX_GAP_S))
    else:
        f["prev_accepted"] = f["prev_rejected"] = f["dt_prev_decision_log"] = 0.0
    recent = decided[-RECENT_DECISIONS:]
    accepted = sum(1 for h in recent if h.outcome == "accepted")
    # Shrunk towards 1/3 (typical acceptance) so two decisions do not read as certainty.
    f["recent_accept_rate"] = (accepted + 1.0) / (len(recent) + 3.0)
    f["decided_log"] = _log(len(decided))
    f["same_place_as_prev"] = float(bool(earlier) and earlier[-1].prefix is not None
                                    and earlier[-1].prefix == event.prefix)
    # How long the user has been weighing the last suggestions (each known once it was decided):
    # long deliberation (reading, verifying) goes with taking fewer, and it tells the model about a
    # new user before their own acceptance rate does (cups-dev: AUC 0.58 alone over the last 5).
    last = decided[-1].decision_ms if decided else None
    f["prev_decision_s_log"] = _log(last / 1000.0) if last is not None else 0.0
    times = [h.decision_ms for h in decided[-RECENT_DECISION_TIMES:] if h.decision_ms is not None]
    f["recent_decision_s_log"] = sum(_log(t / 1000.0) for t in times) / len(times) if times else 0.0


def suggestion_features(event: SuggestionEvent, history: Sequence[SuggestionEvent],
                        context: dict[str, float] | None = None,
                        view: SessionView | None = None) -> dict[str, float]:
    """Context features plus features of `event.suggestion`. Pass stage 1's `context` and `view`
    to reuse them."""
    if view is None:
        view = session_view(event, history)
    if context is None:
        context = context_features(event, history, view)
    return suggestion_row(context, suggestion_only_features(event, context, view))


def suggestion_row(context: Mapping[str, float], only: Mapping[str, float]) -> dict[str, float]:
    """The stage-2 row, in SUGGESTION_FEATURES order: the context row without the stage-1-only
    features, then the suggestion's own."""
    row = {**context, **only}
    for name in STAGE1_ONLY_FEATURES:
        row.pop(name, None)
    return row


def suggestion_only_features(event: SuggestionEvent, context: dict[str, float], view: SessionView) -> dict[str, float]:
    """The SUGGESTION_ONLY_FEATURES of `event` given its context row and session view."""
    f: dict[str, float] = {}
    prefix = event.prefix or ""
    sugg = (event.suggestion or "")[:SUGGESTION_CHARS]
    suffix = event.suffix or ""
    python = _is_python(event)
    lines = sugg.split("\n")
    nonblank = [ln for ln in map(str.strip, lines) if ln]
    tokens = _TOKEN_RE.findall(sugg)
    token_set = frozenset(tokens)
    f["sugg_chars_log"] = _log(len(sugg))
    f["sugg_lines_log"] = _log(len(nonblank))
    f["sugg_tokens_log"] = _log(len(tokens))
    f["sugg_first_line_chars_log"] = _log(len(nonblank[0]) if nonblank else 0)
    f["sugg_multiline"] = float(len(nonblank) > 1)
    f["sugg_starts_newline"] = float(sugg.startswith(("\n", "\r\n")))
    mark = "#" if python else "//"
    comments = sum(1 for ln in nonblank if ln.startswith(mark))
    f["sugg_is_comment"] = float(bool(nonblank) and nonblank[0].startswith(mark))
    f["sugg_comment_frac"] = comments / len(nonblank) if nonblank else 0.0
    f["sugg_alnum_frac"] = _alnum_count(sugg) / len(sugg) if sugg else 0.0
    f["sugg_mid_word"] = float(bool(prefix) and bool(sugg) and (prefix[-1].isalnum() or prefix[-1] == "_")
                               and (sugg[0].isalnum() or sugg[0] == "_"))

    opens = sugg.count("(") + sugg.count("[") + sugg.count("{")
    closes = sugg.count(")") + sugg.count("]") + sugg.count("}")
    depth = context.get("bracket_depth", 0.0)
    f["sugg_bracket_net"] = float(max(-3, min(3, opens - closes)))
    # More closing brackets than the context has open ones: the suggestion cannot fit.
    f["sugg_unbalanced_close"] = float(closes - opens > depth)
    f["sugg_closes_context"] = float(depth > 0 and closes - opens >= depth)

    f["sugg_repeated_lines"] = 1.0 - len(set(nonblank)) / len(nonblank) if nonblank else 0.0
    f["sugg_token_distinct"] = len(token_set) / len(tokens) if tokens else 0.0
    long_lines = [ln for ln in nonblank if len(ln) > 3]
    f["sugg_lines_in_prefix"] = (sum(1 for ln in long_lines if _has_line(prefix, ln)) / len(long_lines)
                                 if long_lines else 0.0)
    # Names the suggestion uses that the visible code never mentions: a cheap stand-in for "jedi
    # would not know this name" (hallucinated attributes and helpers get rejected).
    stop = _BUILTIN_NAMES if python else _JS_KEYWORDS
    idents = [name for name in _IDENT_RE.findall(sugg) if name not in stop]
    # The identifier being completed at the cursor counts as known when it extends the prefix's word.
    if idents and f["sugg_mid_word"]:
        idents = idents[1:]
    # One- and two-letter names (loop variables, short locals) are never counted as unknown.
    unknown = {name for name in set(idents) if len(name) > 2 and not _mentioned(name, prefix, suffix)}
    f["sugg_ident_known_frac"] = 1.0 - sum(1 for name in idents if name in unknown) / len(idents) if idents else 1.0
    f["sugg_ident_unknown_log"] = _log(len(unknown))
    f["sugg_defines"] = float(any(ln.startswith(("def ", "class ", "async def ", "function ")) for ln in nonblank))
    if _suffix_known(event) and long_lines:
        suffix_lines = set(map(str.strip, suffix.split("\n", 20)[:20]))  # not the whole suffix
        f["sugg_suffix_dup"] = sum(1 for ln in long_lines if ln in suffix_lines) / len(long_lines)
    else:
        f["sugg_suffix_dup"] = 0.0

    state = _tail_lex(prefix, python)
    left_open: bool | None = None  # a bracket or string still open after the suggestion
    ok = None
    if python and sugg and not state.in_string and not state.in_comment:
        left_open, stray = _sugg_lex(prefix, sugg, True)
        ok = _statement_parses(state, sugg, left_open, stray)
    f["parse_known"] = float(ok is not None)
    f["parse_ok"] = float(bool(ok))

    latency = _flt(event.latency_ms)
    f["latency_known"] = float(latency is not None)
    f["latency_log"] = _log(latency) if latency is not None else 0.0
    extra = event.extra or {}
    conf = _flt(extra.get("confidence"))
    f["confidence_known"] = float(conf is not None)
    f["confidence"] = max(0.0, min(1.0, conf)) if conf is not None else 0.0
    logprob = _flt(extra.get("logprob"))
    f["logprob_known"] = float(logprob is not None)
    f["logprob"] = max(-20.0, min(0.0, logprob)) if logprob is not None else 0.0
    jedi = extra.get("jedi_agree")
    jedi_value = float(jedi) if isinstance(jedi, bool) else _flt(jedi)  # finite only: NaN is unknown
    if jedi_value is not None:
        jedi_value = min(1.0, max(0.0, jedi_value))  # an agreement: 0 (disagrees) … 1 (agrees)
    f["jedi_known"] = float(jedi_value is not None)
    f["jedi_agree"] = jedi_value if jedi_value is not None else 0.0

    earlier, decided_all = view
    # The user's own taste lately: was this very text turned down, how long are the suggestions they
    # took / turned down? One pass over their last RECENT_TASTE decisions, with log1p inline: this
    # runs on every request (len() is never negative, so _log's clamp is not needed).
    log1p = math.log1p
    acc_sum = rej_sum = 0.0
    acc_n = rej_n = 0
    rejected_before = False
    decided: list[SuggestionEvent] = []
    for h in decided_all[-RECENT_TASTE:]:
        text = h.suggestion
        if not text:
            continue
        decided.append(h)
        if h.outcome == "accepted":
            acc_sum += log1p(len(text))
            acc_n += 1
        else:  # decided: accepted or rejected
            rej_sum += log1p(len(text))
            rej_n += 1
            if text == sugg:
                rejected_before = True
    f["sugg_rejected_before"] = float(rejected_before)
    recent = earlier[-RECENT_TASTE:]
    # The C-level scan for the text first; its `shown` flag only when the text is there.
    f["sugg_shown_before"] = float(bool(sugg) and sugg in map(_SUGGESTION, recent)
                                   and any(h.shown for h in recent if h.suggestion == sugg))
    last_line = lines[-1].rstrip() if lines else ""
    # The cheap test of the last character first: lexing the suggestion is needed only if it passes.
    ends_like_code = bool(last_line) and (last_line[-1] in ")]}:\"'" or last_line[-1].isalnum())
    f["sugg_complete_line"] = float(ends_like_code and not (
        left_open if left_open is not None else sugg_open_after(prefix, sugg, python)))
    mine = f["sugg_chars_log"]
    f["len_vs_accepted"] = mine - acc_sum / acc_n if acc_n else 0.0
    f["len_vs_rejected"] = mine - rej_sum / rej_n if rej_n else 0.0
    sim_rejected = sim_accepted = 0.0
    if token_set:  # token-set Jaccard overlap, a cheap stand-in for edit similarity; inline: every request
        size = len(token_set)
        for h in decided[-RECENT_DECISIONS:]:
            other = _token_set(h.suggestion or "")
            if not other:
                continue
            both = len(token_set & other)
            sim = both / (size + len(other) - both)
            if h.outcome == "accepted":
                if sim > sim_accepted:
                    sim_accepted = sim
            elif sim > sim_rejected:
                sim_rejected = sim
    f["sim_rejected"] = sim_rejected
    f["sim_accepted"] = sim_accepted
    return f


def sugg_open_after(prefix: str, sugg: str, python: bool) -> bool:
    """Does the text still have an open bracket or string after the suggestion (on its tail)?"""
    return _sugg_lex(prefix, sugg, python)[0]


def _sugg_lex(prefix: str, sugg: str, python: bool) -> tuple[bool, bool]:
    """(a bracket or string still open after the suggestion, a bracket of the suggestion's that
    closes none or another kind), read by the lexer on the prefix's tail and the suggestion."""
    state = _tail_lex(prefix, python)
    if state.in_string or state.in_comment:  # carry on from where that string or comment opened
        in_string, _, stack, _, stray, _ = _lex(state.tail[state.open_from:] + sugg, python, state.stack)
    else:  # carry on from the lexer's state at the cursor
        in_string, _, stack, _, stray, _ = _lex(sugg, python, state.stack)
    return in_string or bool(stack), stray


@lru_cache(maxsize=256)
def _token_set(text: str) -> frozenset[str]:
    """Memoised: the same recent suggestions are compared with every new one."""
    return frozenset(_TOKEN_RE.findall(text))


def features_for_stage(stage: str, event: SuggestionEvent, history: Sequence[SuggestionEvent]) -> dict[str, float]:
    if stage == "context":
        return context_features(event, history)
    if stage == "suggestion":
        return suggestion_features(event, history)
    raise ValueError(f"unknown stage {stage!r}")


def vectorize(rows: Sequence[dict[str, float]], names: Sequence[str]) -> np.ndarray:
    """Rows of feature dicts -> float matrix in `names` order (missing names are 0)."""
    out = np.zeros((len(rows), len(names)), dtype=float)
    for i, row in enumerate(rows):
        out[i] = [row.get(name, 0.0) for name in names]
    return out


class _Earlier:
    """The first `count` of a session's events sorted by ts, without copying them: all that
    `history_window` reads of them is their end, backwards."""

    __slots__ = ("items", "count")

    def __init__(self, items: list[SuggestionEvent], count: int) -> None:
        self.items, self.count = items, count

    def __len__(self) -> int:
        return self.count

    def __reversed__(self) -> Iterator[SuggestionEvent]:
        items = self.items
        return (items[i] for i in range(self.count - 1, -1, -1))


def session_histories(events: Sequence[SuggestionEvent]) -> list[list[SuggestionEvent]]:
    """For each event (in input order), the `history_window` of its session's events with an earlier
    ts (sorted by ts, stably; oldest first): what the live engine passes the gate. In O(n log n):
    the earlier events are the sorted session up to the first event of the same ts (a bisection),
    read from their end. (Filtering the whole session for every event grew with the square of a
    session's length: 20,000 events in one session took 130 s, a 10^6-event file never got to its
    first fold.)"""
    by_session: dict[str, list[SuggestionEvent]] = {}
    for event in events:
        by_session.setdefault(event.session, []).append(event)
    stamps: dict[str, list[float]] = {}
    for session, items in by_session.items():
        items.sort(key=lambda e: e.ts)
        stamps[session] = [e.ts for e in items]
    out: list[list[SuggestionEvent]] = []
    for event in events:
        items = by_session[event.session]
        count = bisect_left(stamps[event.session], event.ts)
        start = max(0, count - _TAIL)
        window = history_window(items[start:count])  # a short copy, read at C speed
        if start and sum(1 for e in window if not is_gated(e)) < HISTORY_WINDOW:
            # the window reaches past the tail (a long run of gated events): read on, uncopied
            window = history_window(_Earlier(items, count))  # type: ignore[arg-type]
        out.append(window)
    return out


_TAIL = 4 * HISTORY_WINDOW  # holds a whole window unless gated events crowd it
