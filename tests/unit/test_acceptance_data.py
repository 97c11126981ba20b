"""Synthetic acceptance events with a learnable signal, shared by the test_acceptance_* modules
(named test_* so that it stays within the acceptance tests; it also checks the generator itself)."""

from __future__ import annotations

import random

from heedls.server.events import SuggestionEvent

GOOD = ["return result", "self.value = value", "for item in items:", "print(total)", "x = compute(a, b)"]
BAD = [")))]]", "foo_bar_baz_qux = undefined_thing(zzz, yyy, www, vvv, uuu)\n" * 3, "#", "]]]", "lambda: lambda: 0"]


def make_events(sessions: int = 6, per_session: int = 40, seed: int = 0) -> list[SuggestionEvent]:
    """Accepted mostly when the suggestion is short and well formed (80/20 noise)."""
    rng = random.Random(seed)
    events: list[SuggestionEvent] = []
    for s in range(sessions):
        ts = 1_700_000_000.0 + s * 10_000
        for i in range(per_session):
            ts += rng.uniform(2, 30)
            good = rng.random() < 0.45
            text = rng.choice(GOOD if good else BAD)
            accepted = good if rng.random() < 0.85 else not good
            prefix = "def f(a, b):\n    result = a + b\n" + "    " * rng.randint(0, 2) + rng.choice(["", "x", "re"])
            events.append(SuggestionEvent(
                id=f"s{s}-e{i}", session=f"sess-{s}", ts=round(ts, 3), language="python", file="m.py",
                prefix=prefix, suffix="", suggestion=text, shown=True,
                outcome="accepted" if accepted else "rejected", latency_ms=rng.uniform(10, 400),
                decision_ms=rng.uniform(300, 3000)))
    return events


def test_generator_is_seeded_and_balanced() -> None:
    a, b = make_events(seed=1), make_events(seed=1)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    rate = sum(e.outcome == "accepted" for e in a) / len(a)
    assert 0.25 < rate < 0.75
