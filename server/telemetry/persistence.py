"""Is accepted text still in the code 30 s / 120 s / 600 s later? (CDHF's warning: acceptance alone
is a poor reward; an accepted suggestion deleted a minute later was not useful.)

Pure: no pygls. The server calls `track()` when `heedls.accept` arrives and `check()` from didChange
and from a timer (every ~10 s is plenty); `check()` returns the events whose `persisted_*` fields
just became known, already updated in place, for the caller to `store.record()` and `gate.observe()`.

The rule (documented in docs/telemetry.md):
- Whitespace runs are collapsed to one space on both sides first (a reformat is not an edit).
- *Exact*: the accepted text occurs verbatim near the insertion point (the region from
  `offset - span` to `offset + len(text) + span`, `span = max(2000, 2·len)` characters), or, for
  texts of at least `anywhere_min_chars` (20) characters, anywhere in the document (moved code is
  still code the user kept; short texts like `)` would match anywhere by accident). Copies that
  stood in the document before the accept do not count: only more copies than there were (the
  local provider suggests lines it found elsewhere in the file; one deleted at once is not kept).
- *Between its neighbours*: otherwise, when the code that stood just before and just after the
  cursor (`ANCHOR_CHARS` of each, given to `track()`) is still there, near where it was (and the
  one before occurs more often than its other copies did at the accept: duplicated code), only
  what now lies between the two is compared with the text (exactly, or by the similar rule
  below). Text that was deleted leaves nothing between them, whatever resembles it nearby: the
  signature above a deleted `return compute(items, factor)` shares most of its tokens.
- *Similar*: otherwise, for a text of at least FUZZY_MIN_TOKENS (6) tokens, the best-matching window in that region — windows anchored at every
  matching block of `difflib.SequenceMatcher`, at 0.8×, 1× and 1.25× the text length — scores
  `SequenceMatcher.ratio() ≥ threshold` (default 0.7: a few renamed identifiers or an added argument
  keep it, rewriting half of it does not).
- A document that cannot be read at a checkpoint leaves that checkpoint `null` (the server reads a
  closed document from disk: what the user kept; a deleted file cannot be read).
Each checkpoint is judged on the document as it is when `check()` first runs at or after it, so a
check long overdue (the editor was idle) judges all its checkpoints on the same text.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from heedls.server.events import SuggestionEvent

CHECKPOINTS: tuple[tuple[int, str], ...] = (
    (30, "persisted_30s"),
    (120, "persisted_120s"),
    (600, "persisted_600s"),
)
DEFAULT_THRESHOLD = 0.7
# Shorter texts are kept only verbatim: with 3 tokens, one changed still scores 0.8 (`bda: None`
# accepted mid-word, deleted, and `bda: {"maxsize": ...}` typed in its place read as kept).
FUZZY_MIN_TOKENS = 6
_WS = re.compile(r"\s+")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_ANCHORS = 12  # candidate windows: one per longest common run, at most this many
ANCHOR_CHARS = 40  # code kept from before and after the cursor to find the accepted text's place
_ANCHOR_REACH = 20_000  # how far (characters) edits elsewhere may have moved that place


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _region(document: str, offset: int, length: int) -> str:
    span = max(2000, 2 * length)
    return document[max(0, offset - span) : offset + length + span]


def similarity(text: str, document: str, offset: int, anywhere_min_chars: int = 20,
               copies: int = 0, near_copies: int = 0) -> float:
    """How much of `text` survives in `document` near `offset`: 1.0 = verbatim, 0.0 = gone.

    `copies` / `near_copies`: how often the text stood in the document / near `offset` before it
    was inserted; only more copies than that count, and with a copy nearby already the fuzzy
    comparison (which would find that copy) cannot tell, so it reads 0."""
    wanted = _norm(text)
    if not wanted:
        return 1.0  # an all-whitespace suggestion cannot be told apart from its surroundings
    offset = max(0, min(offset, len(document)))
    raw_region = _region(document, offset, len(text))
    if _norm(raw_region).count(wanted) > near_copies:
        return 1.0
    if len(wanted) >= anywhere_min_chars and _norm(document).count(wanted) > copies:
        return 1.0
    if near_copies:
        return 0.0
    # Fuzzy part on tokens (identifiers, numbers, single punctuation): whitespace-blind and fast
    # enough for a 600-character suggestion in a 10 000-character region (a few ms).
    want = _tokens(text)
    if len(want) < FUZZY_MIN_TOKENS:
        return 0.0
    region = _tokens(raw_region)
    if not region:
        return 0.0
    matcher = difflib.SequenceMatcher(None, region, want, autojunk=False)
    blocks = sorted((b for b in matcher.get_matching_blocks() if b.size), key=lambda b: -b.size)[:_ANCHORS]
    size = len(want)
    lengths = sorted({max(1, round(size * 0.8)), size, round(size * 1.25) + 1})
    scorer = difflib.SequenceMatcher(None, autojunk=False)
    scorer.set_seq2(want)
    best = 0.0
    # Windows aligned so that one of the longest common runs sits where it sits in the text.
    for start in sorted({max(0, b.a - b.b) for b in blocks}):
        for length in lengths:
            scorer.set_seq1(region[start : start + length])
            if scorer.real_quick_ratio() <= best or scorer.quick_ratio() <= best:
                continue
            best = max(best, scorer.ratio())
    return best


def _after_left_neighbour(document: str, offset: int, before: str) -> int | None:
    """Where the occurrence of `before` within reach of `offset` that ends nearest to it ends."""
    best = -1
    at = document.find(before, max(0, offset - _ANCHOR_REACH - len(before)))
    while 0 <= at <= offset + _ANCHOR_REACH:
        if best < 0 or abs(at + len(before) - offset) < abs(best + len(before) - offset):
            best = at
        at = document.find(before, at + 1)
    return best + len(before) if best >= 0 else None


def between_neighbours(document: str, offset: int, before: str, after: str) -> tuple[int | None, str | None]:
    """(where `before`, the code that ended at `offset`, ends now; what lies between it and the next
    `after` now), each None when that neighbour is gone: of `before`'s occurrences within reach,
    the one ending nearest to `offset`. Without `before`, the document's start stands for it when
    `offset` is within reach of it."""
    if not before and not after:
        return None, None
    if before:
        start = _after_left_neighbour(document, offset, before)
    else:
        start = 0 if offset <= _ANCHOR_REACH else None
    if start is None:
        return None, None
    if not after:
        return start, document[start:] if len(document) - start <= _ANCHOR_REACH else None
    end = document.find(after, start, start + _ANCHOR_REACH + len(after))
    return start, document[start:end] if end >= 0 else None


def placed_similarity(item: Tracked, document: str, anywhere_min_chars: int = 20) -> float:
    """`similarity` of a tracked text, judged between its neighbours when they are still there."""
    wanted = _norm(item.text)
    if len(wanted) >= anywhere_min_chars and _norm(document).count(wanted) > item.copies:
        return 1.0  # moved code is still code the user kept
    if item.before and document.count(item.before) <= item.before_copies:
        # every copy of its left neighbour left was in the document before the accept (duplicated
        # code): its own is gone, and the text after another copy says nothing of the accepted one
        start, span = None, None
    else:
        start, span = between_neighbours(document, item.offset, item.before, item.after)
    if span is None:
        # The code after it rewritten (its first characters were the right neighbour): the text
        # still right after its left neighbour is kept. (A run of a simulated user read a 2-character
        # accept "not kept" at 30 s, while the next function's body was being retyped, and "kept" later.)
        if item.before and start is not None and document.startswith(item.text, start):
            return 1.0
        # the "anywhere" rule was just applied: not a second pass over the whole document
        return similarity(item.text, document, item.offset, len(wanted) + 1, item.copies, item.near_copies)
    if not span.strip():
        return 0.0 if wanted else 1.0
    return similarity(item.text, span, 0, anywhere_min_chars)


@dataclass
class Tracked:
    event: SuggestionEvent
    uri: str
    text: str
    offset: int
    accepted_at: float
    before: str = ""
    after: str = ""
    copies: int = 0  # occurrences of the text in the document before it was inserted
    near_copies: int = 0  # ... of them near the insertion point
    before_copies: int = 0  # occurrences of `before` in that document other than the cursor's own
    pending: list[tuple[int, str]] = field(default_factory=lambda: list(CHECKPOINTS))


class PersistenceTracker:
    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        clock: Callable[[], float] = time.time,
        max_tracked: int = 2000,
    ) -> None:
        self.threshold = threshold
        self.clock = clock
        self.max_tracked = max_tracked
        self._tracked: list[Tracked] = []

    def track(
        self,
        event: SuggestionEvent,
        uri: str,
        text: str,
        offset: int,
        accepted_at: float | None = None,
        before: str = "",
        after: str = "",
        document: str | None = None,
    ) -> None:
        """Remember an accepted suggestion: `text` as inserted, at character `offset` of `uri`;
        `before` / `after`: the code just before and after the cursor when it was shown (the last
        and first ANCHOR_CHARS are kept), to find its place again; `document`: the whole document
        when the accept arrived, with or without the text inserted yet (editors differ), else
        `before + after` stands for it. Copies of the text already in it are counted, so that
        they are not taken for the accepted text later."""
        when = self.clock() if accepted_at is None else accepted_at
        offset = max(0, offset)
        at = offset  # the insertion point in `document`
        if document is None:
            document, at = before + after, len(before)
        elif document[offset : offset + len(text)] == text:
            document = document[:offset] + document[offset + len(text):]
        wanted = _norm(text)
        copies = near = 0
        if wanted:
            copies = _norm(document).count(wanted)
            near = _norm(_region(document, at, len(text))).count(wanted) if copies else 0
        before, after = before[-ANCHOR_CHARS:], after[:ANCHOR_CHARS]
        # Code duplicated in the file (what the local provider suggests from) repeats the neighbour
        # too: once the accepted text and its own neighbour are deleted, another copy of both read
        # as "kept" (and so did a document closed unsaved, read back from disk).
        before_copies = document.count(before) if before else 0
        if before_copies and document.endswith(before, 0, at):
            before_copies -= 1
        self._tracked.append(Tracked(event, uri, text, offset, when, before, after, copies, near, before_copies))
        if len(self._tracked) > self.max_tracked:  # bounded memory under a runaway client
            del self._tracked[0]

    def __len__(self) -> int:
        return len(self._tracked)

    def next_due(self) -> float | None:
        """When the next checkpoint falls due (for scheduling a timer), or None."""
        dues = [t.accepted_at + t.pending[0][0] for t in self._tracked if t.pending]
        return min(dues) if dues else None

    def check(self, now: float | None, get_text: Callable[[str], str | None]) -> list[SuggestionEvent]:
        """Decide every checkpoint that is due; return the events that changed (updated in place)."""
        now = self.clock() if now is None else now
        changed: list[SuggestionEvent] = []
        texts: dict[str, str | None] = {}
        keep: list[Tracked] = []
        for item in self._tracked:
            due = [cp for cp in item.pending if now >= item.accepted_at + cp[0]]
            if due:
                if item.uri not in texts:
                    texts[item.uri] = get_text(item.uri)
                document = texts[item.uri]
                known = False
                score = None
                if document is not None:
                    score = placed_similarity(item, document)
                for cp in due:
                    item.pending.remove(cp)
                    if score is not None:
                        setattr(item.event, cp[1], score >= self.threshold)
                        known = True
                if known:
                    item.event.extra["persisted_similarity"] = round(score or 0.0, 3)
                    changed.append(item.event)
            if item.pending:
                keep.append(item)
        self._tracked = keep
        return changed
