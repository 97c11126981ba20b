"""The circuit breaker's state machine, with a clock the tests move by hand."""

from __future__ import annotations

import pytest
from heedls.server.providers.breaker import MAX_COOLDOWN_S, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(clock: FakeClock, failures: int = 3, cooldown_s: float = 30.0) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(failures, cooldown_s, clock=clock, on_change=lambda a, b: changes.append((a, b)))
    return breaker, changes


def fail_until_open(breaker: CircuitBreaker) -> None:
    while breaker.state == "closed":
        assert breaker.allow()
        breaker.record_failure()


def test_opens_after_consecutive_failures_only(clock: FakeClock) -> None:
    breaker, changes = make(clock, failures=3)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert changes == [("closed", "open")]


def test_open_becomes_half_open_after_the_cooldown_and_lets_one_probe_through(clock: FakeClock) -> None:
    breaker, changes = make(clock, failures=1, cooldown_s=30)
    fail_until_open(breaker)
    clock.advance(29.9)
    assert breaker.state == "open" and not breaker.allow()
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.advance(0.2)
    assert breaker.state == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_doubles_the_cooldown_up_to_ten_minutes(clock: FakeClock) -> None:
    breaker, _ = make(clock, failures=2, cooldown_s=30)
    fail_until_open(breaker)
    seen = []
    for _ in range(8):
        seen.append(breaker.cooldown_s)
        clock.advance(breaker.cooldown_s)
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state == "open"
    assert seen == [30, 60, 120, 240, 480, 600, 600, 600]
    assert MAX_COOLDOWN_S == 600
    # recovery resets the cooldown to its base
    clock.advance(600)
    assert breaker.allow()
    breaker.record_success()
    fail_until_open(breaker)
    assert breaker.cooldown_s == 30


def test_late_failures_while_open_do_not_extend_the_cooldown(clock: FakeClock) -> None:
    breaker, changes = make(clock, failures=1, cooldown_s=10)
    fail_until_open(breaker)
    breaker.record_failure()  # a request started before the breaker opened
    breaker.record_failure()
    assert breaker.cooldown_s == 10
    clock.advance(10)
    assert breaker.state == "half_open"
    assert changes == [("closed", "open"), ("open", "half_open")]


def test_an_abandoned_probe_frees_the_slot(clock: FakeClock) -> None:
    breaker, _ = make(clock, failures=1, cooldown_s=5)
    fail_until_open(breaker)
    clock.advance(5)
    assert breaker.allow()
    breaker.abandon()  # the keystroke was superseded: no verdict
    assert breaker.state == "half_open"
    assert breaker.allow()


def test_a_probe_that_never_reports_back_does_not_wedge_the_breaker(clock: FakeClock) -> None:
    breaker, _ = make(clock, failures=1, cooldown_s=5)
    fail_until_open(breaker)
    clock.advance(5)
    assert breaker.allow()
    assert not breaker.allow()
    clock.advance(5.1)
    assert breaker.allow()


def test_degenerate_settings_are_clamped(clock: FakeClock) -> None:
    breaker, _ = make(clock, failures=0, cooldown_s=0)
    assert breaker.failure_threshold == 1
    breaker.record_failure()
    # zero cooldown: immediately half-open, i.e. every request is a probe
    assert breaker.state == "half_open"
    assert breaker.allow()


def test_trip_opens_at_once_for_at_least_the_given_time(clock: FakeClock) -> None:
    breaker, changes = make(clock, failures=3, cooldown_s=30)
    breaker.trip(120)  # e.g. HTTP 429 with Retry-After: 120
    assert breaker.state == "open" and breaker.cooldown_s == 120
    clock.advance(119)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.cooldown_s == 30
    breaker.trip(5)  # shorter than the base cooldown: the base wins
    assert breaker.cooldown_s == 30
    breaker.trip(10_000)  # capped like any cooldown
    assert breaker.cooldown_s == MAX_COOLDOWN_S
    assert changes[0] == ("closed", "open")
