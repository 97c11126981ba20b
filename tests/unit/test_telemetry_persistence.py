"""Persistence of accepted text at 30 s / 120 s / 600 s: kept, edited slightly, deleted, moved."""

from __future__ import annotations

from heedls.server.events import SuggestionEvent
from heedls.server.telemetry.persistence import PersistenceTracker, similarity

BEFORE = "import math\n\n\ndef area(r):\n    "
AFTER = "\n\n\ndef main():\n    print(area(2))\n"
ACCEPTED = "return math.pi * r ** 2 if r >= 0 else float('nan')"
DOC = BEFORE + ACCEPTED + AFTER
OFFSET = len(BEFORE)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def accepted_event() -> SuggestionEvent:
    return SuggestionEvent(
        id="a1",
        session="s",
        ts=990.0,
        suggestion=ACCEPTED,
        shown=True,
        outcome="accepted",
    )


def tracker_with(
    doc: dict[str, str | None],
) -> tuple[PersistenceTracker, Clock, SuggestionEvent]:
    clock = Clock()
    tracker = PersistenceTracker(clock=clock)
    event = accepted_event()
    tracker.track(event, "file:///w/geo.py", ACCEPTED, OFFSET)
    return tracker, clock, event


def test_kept_text_persists_at_every_checkpoint_and_each_is_reported_once() -> None:
    docs: dict[str, str | None] = {"file:///w/geo.py": DOC}
    tracker, clock, event = tracker_with(docs)
    assert tracker.check(clock.now + 29, docs.get) == []
    assert event.persisted_30s is None
    changed = tracker.check(clock.now + 30, docs.get)
    assert changed == [event]
    assert (event.persisted_30s, event.persisted_120s, event.persisted_600s) == (
        True,
        None,
        None,
    )
    assert tracker.check(clock.now + 60, docs.get) == []
    assert tracker.check(clock.now + 120, docs.get) == [event]
    assert event.persisted_120s is True
    assert tracker.check(clock.now + 600, docs.get) == [event]
    assert event.persisted_600s is True
    assert len(tracker) == 0  # done with it
    assert event.label("persisted") == 1


def test_slightly_edited_text_still_counts() -> None:
    edited = DOC.replace("r ** 2", "radius ** 2").replace("float('nan')", "math.nan")
    assert ACCEPTED not in edited
    docs: dict[str, str | None] = {"file:///w/geo.py": edited}
    tracker, clock, event = tracker_with(docs)
    tracker.check(clock.now + 30, docs.get)
    assert event.persisted_30s is True
    assert 0.7 <= event.extra["persisted_similarity"] < 1.0


def test_reformatting_is_not_an_edit() -> None:
    reformatted = DOC.replace("r ** 2 if r", "r**2  if  r").replace(" else ", "\n        else ")
    assert similarity(ACCEPTED, reformatted, OFFSET) > 0.9


def test_deleted_text_does_not_persist() -> None:
    docs: dict[str, str | None] = {"file:///w/geo.py": BEFORE + "return 0" + AFTER}
    tracker, clock, event = tracker_with(docs)
    tracker.check(clock.now + 30, docs.get)
    assert event.persisted_30s is False
    assert event.label("persisted") == 0


def test_rewritten_text_does_not_persist() -> None:
    rewritten = BEFORE + "if r < 0:\n        raise ValueError(r)\n    return 3.14159 * r * r" + AFTER
    docs: dict[str, str | None] = {"file:///w/geo.py": rewritten}
    tracker, clock, event = tracker_with(docs)
    tracker.check(clock.now + 30, docs.get)
    assert event.persisted_30s is False


def test_kept_then_deleted_between_checkpoints() -> None:
    docs: dict[str, str | None] = {"file:///w/geo.py": DOC}
    tracker, clock, event = tracker_with(docs)
    tracker.check(clock.now + 31, docs.get)
    docs["file:///w/geo.py"] = BEFORE + "pass" + AFTER
    tracker.check(clock.now + 125, docs.get)
    tracker.check(clock.now + 700, docs.get)
    assert (event.persisted_30s, event.persisted_120s, event.persisted_600s) == (
        True,
        False,
        False,
    )


def test_text_shifted_by_edits_above_is_found() -> None:
    header = "# a long licence header\n" * 400  # ~10 kB inserted above the suggestion
    docs: dict[str, str | None] = {"file:///w/geo.py": header + DOC}
    tracker, clock, event = tracker_with(docs)
    tracker.check(clock.now + 30, docs.get)
    assert event.persisted_30s is True


def test_text_moved_elsewhere_in_the_file_is_found() -> None:
    moved = BEFORE + "pass" + AFTER + "# filler line\n" * 300 + "\ndef area2(r):\n    " + ACCEPTED + "\n"
    docs: dict[str, str | None] = {"file:///w/geo.py": moved}
    tracker, clock, event = tracker_with(docs)
    tracker.check(clock.now + 30, docs.get)
    assert event.persisted_30s is True


def test_short_text_only_counts_near_where_it_was_inserted() -> None:
    # ")" exists all over a file; it must not count as kept when it is gone from its place
    far_away = "x = f(1)\n" + "# filler\n" * 500
    doc = far_away + "y = g(2\n"
    assert ")" not in doc[-2100:]
    assert similarity(")", doc, len(doc) - 1) < 0.7
    assert similarity(")", doc + ")", len(doc)) == 1.0
    assert similarity("return x", "y = 1\n" * 1000 + "return x", 0) < 0.7


def test_closed_document_leaves_the_checkpoint_unknown() -> None:
    docs: dict[str, str | None] = {}
    tracker, clock, event = tracker_with(docs)
    assert tracker.check(clock.now + 30, docs.get) == []
    assert event.persisted_30s is None
    docs["file:///w/geo.py"] = DOC  # reopened later: the next checkpoints are decided
    assert tracker.check(clock.now + 120, docs.get) == [event]
    assert (event.persisted_30s, event.persisted_120s) == (None, True)


def test_overdue_check_decides_all_due_checkpoints_at_once_and_clock_is_injectable() -> None:
    docs: dict[str, str | None] = {"file:///w/geo.py": DOC}
    tracker, clock, event = tracker_with(docs)
    assert tracker.next_due() == clock.now + 30
    clock.now += 601
    assert tracker.check(None, docs.get) == [event]
    assert (event.persisted_30s, event.persisted_120s, event.persisted_600s) == (
        True,
        True,
        True,
    )
    assert tracker.next_due() is None


def test_documents_are_read_once_per_check() -> None:
    reads: list[str] = []

    def get_text(uri: str) -> str | None:
        reads.append(uri)
        return DOC

    clock = Clock()
    tracker = PersistenceTracker(clock=clock)
    events = [accepted_event() for _ in range(5)]
    for e in events:
        tracker.track(e, "file:///w/geo.py", ACCEPTED, OFFSET)
    assert len(tracker.check(clock.now + 30, get_text)) == 5
    assert reads == ["file:///w/geo.py"]


def test_threshold_is_configurable() -> None:
    edited = DOC.replace("r ** 2", "radius ** 2").replace("float('nan')", "math.nan")
    docs: dict[str, str | None] = {"file:///w/geo.py": edited}
    clock = Clock()
    strict = PersistenceTracker(threshold=0.99, clock=clock)
    event = accepted_event()
    strict.track(event, "file:///w/geo.py", ACCEPTED, OFFSET)
    strict.check(clock.now + 30, docs.get)
    assert event.persisted_30s is False


def test_deleted_text_does_not_persist_however_much_its_neighbours_resemble_it() -> None:
    # The signature above shares most tokens with the deleted line: nearby look-alikes are not it.
    before, after = "def f(items, factor):\n    ", "\n    return 0\n"
    text = "return compute(items, factor)"
    assert similarity(text, before + after, len(before)) >= 0.7  # what a look around would say
    clock = Clock()
    tracker = PersistenceTracker(clock=clock)
    event = accepted_event()
    tracker.track(event, "u", text, len(before), before=before, after=after)
    tracker.check(clock.now + 30, {"u": before + after}.get)
    assert event.persisted_30s is False and event.extra["persisted_similarity"] == 0.0


def test_text_between_its_neighbours_is_judged_there_kept_extended_or_shifted() -> None:
    def judged(document: str, text: str = ")") -> bool | None:
        clock = Clock()
        tracker = PersistenceTracker(clock=clock)
        event = accepted_event()
        before = "x = f(1)\ny = g(2"
        tracker.track(event, "u", text, len(before), before=before, after="\nz = 3\n")
        tracker.check(clock.now + 30, {"u": document}.get)
        return event.persisted_30s

    assert judged("x = f(1)\ny = g(2)\nz = 3\n") is True
    assert judged("x = f(1)\ny = g(2) + h(4)\nz = 3\n") is True  # the user went on typing after it
    assert judged("# header\n" * 50 + "x = f(1)\ny = g(2)\nz = 3\n") is True  # shifted by edits above
    assert judged("x = f(1)\ny = g(2\nz = 3\n") is False  # gone, though ")" is one line up


def test_text_still_right_after_its_left_neighbour_is_kept_when_the_code_after_it_was_rewritten() -> None:
    # A short accept with copies of it nearby, the code after it rewritten (it was the right
    # neighbour) and a copy with it: counting copies cannot tell, the left neighbour can.
    above = "    def __init__(self, obj):\n        self.__obj = obj\n\n    def __reduce__(self):\n"
    before = above + "        return (self.__descriptor.__get__, (self.__o"
    after = ",))\n\n    def __repr__(self):\n        return repr(self.__obj)\n"  # another copy

    def judged(later: str) -> bool | None:
        clock = Clock()
        tracker = PersistenceTracker(clock=clock)
        event = accepted_event()
        tracker.track(event, "u", "bj", len(before), before=before, after=after, document=before + "bj" + after)
        tracker.check(clock.now + 30, {"u": later}.get)
        return event.persisted_30s

    rewritten = ",))\n\n    def __repr__(self):\n        "
    assert judged(before + "bj" + rewritten) is True
    assert judged(before + rewritten) is False  # deleted: the copies above are not it
    assert judged(before + "xy" + rewritten) is False


# The local provider suggests lines it found elsewhere in the same file: a copy that stood there
# before the accept is not the accepted text.
COPIED = "if key not in self.__data or self.__size[key] < size:"
SOURCE = "class Cache:\n    def __setitem__(self, key, value):\n        " + COPIED + "\n            pass\n\n"
HEAD = SOURCE + "    def update(self, key, value):\n        "
TAIL = "\n\n    def pop(self, key):\n        return self.__data.pop(key)\n"


def _copied_line_judged(kept: bool, *, whole_document: bool, inserted_at_accept: bool = True) -> bool | None:
    clock = Clock()
    tracker = PersistenceTracker(clock=clock)
    event = accepted_event()
    at_accept = HEAD + COPIED + TAIL if inserted_at_accept else HEAD + TAIL
    tracker.track(event, "u", COPIED, len(HEAD), before=HEAD, after=TAIL,
                  document=at_accept if whole_document else None)
    later = HEAD + (COPIED if kept else "self.__data[key] = value") + TAIL
    tracker.check(clock.now + 30, {"u": later}.get)
    return event.persisted_30s


def test_a_copied_line_deleted_at_once_did_not_persist_though_its_original_is_still_there() -> None:
    assert _copied_line_judged(False, whole_document=True) is False
    assert _copied_line_judged(False, whole_document=True, inserted_at_accept=False) is False
    assert _copied_line_judged(False, whole_document=False) is False  # only the shown context known


def test_a_copied_line_that_stayed_persisted() -> None:
    assert _copied_line_judged(True, whole_document=True) is True
    assert _copied_line_judged(True, whole_document=True, inserted_at_accept=False) is True
    assert _copied_line_judged(True, whole_document=False) is True


def test_a_copied_line_moved_away_from_its_neighbours_is_kept_only_as_an_extra_copy() -> None:
    def judged(later: str) -> bool | None:
        clock = Clock()
        tracker = PersistenceTracker(clock=clock)
        event = accepted_event()
        tracker.track(event, "u", COPIED, len(HEAD), before=HEAD, after=TAIL, document=HEAD + COPIED + TAIL)
        tracker.check(clock.now + 30, {"u": later}.get)
        return event.persisted_30s

    neighbours_gone = "# rewritten\n" + SOURCE + "    def pop(self, key):\n"
    assert judged(neighbours_gone) is False  # the one copy left is the one that was there before
    assert judged(neighbours_gone + "        " + COPIED + "\n") is True  # two copies now: it was kept


def test_similarity_counts_only_copies_beyond_those_that_were_there() -> None:
    doc = "a = 1\n" + COPIED + "\nb = 2\n"
    assert similarity(COPIED, doc, 0) == 1.0
    assert similarity(COPIED, doc, 0, copies=1, near_copies=1) == 0.0
    assert similarity(COPIED, doc + COPIED, 0, copies=1, near_copies=1) == 1.0


def test_a_short_text_is_kept_only_verbatim() -> None:
    # 3 tokens: with one of them changed the token ratio is still 0.8, which said "kept"
    before, after = "        wrapper.cache_parameters = lam", "\n        return wrapper\n"

    def judged(between: str) -> bool | None:
        clock = Clock()
        tracker = PersistenceTracker(clock=clock)
        event = accepted_event()
        tracker.track(event, "u", "bda: None", len(before), before=before, after=after)
        tracker.check(clock.now + 30, {"u": before + between + after}.get)
        return event.persisted_30s

    assert judged("bda: None") is True
    assert judged("bda:  None  # no parameters") is True  # went on typing after it
    assert judged('bda: {"maxsize": maxsize}') is False  # deleted and written otherwise


def test_text_deleted_with_its_neighbour_is_not_kept_because_a_copy_of_both_stands_elsewhere() -> None:
    """Duplicated code (what the local provider suggests from): the accepted `al += item * factor`
    completes a loop that already stands, whole, in `compute` above. Deleted together with the
    `tot` typed before it, or never saved (the closed document read back from disk), it read "kept",
    found after the other copy of its left neighbour."""
    original = ("def compute(items, factor):\n    total = 0\n    for item in items:\n"
                "        total += item * factor\n    return total\n")
    typed = original + "\n\ndef compute_2(items, factor):\n    total = 0\n    for item in items:\n        tot"
    text = "al += item * factor"

    def judged(later: str) -> bool | None:
        clock = Clock()
        tracker = PersistenceTracker(clock=clock)
        event = accepted_event()
        tracker.track(event, "u", text, len(typed), before=typed, after="", document=typed + text)
        tracker.check(clock.now + 30, {"u": later}.get)
        return event.persisted_30s

    assert judged(typed + text + "\n    return total\n") is True  # kept
    assert judged(typed[:-3] + "\n    return total\n") is False  # deleted with the `tot` before it
    assert judged(original) is False  # closed unsaved: the file on disk never had it
    assert judged(typed + "al = sum(items) * factor\n") is False  # replaced
