"""A circuit breaker for a remote provider: stop calling an endpoint that keeps failing.

closed     every request goes to the endpoint; `failures` consecutive failures open the breaker.
open       no request goes to the endpoint for `cooldown_s` seconds (callers serve `local`).
half_open  after the cooldown, exactly one probe request is let through: success closes the
           breaker (and resets the cooldown), failure re-opens it with the cooldown doubled, up to
           `max_cooldown_s` (10 minutes), so a dead endpoint costs one request per 10 minutes.

The clock is injectable so tests can move time instead of sleeping. Not thread-safe: it lives on
the server's event loop, where the check-then-act sequences below cannot interleave.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]
StateListener = Callable[[State, State], None]

MAX_COOLDOWN_S = 600.0


class CircuitBreaker:
    def __init__(
        self,
        failures: int = 3,
        cooldown_s: float = 30.0,
        *,
        max_cooldown_s: float = MAX_COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        self.failure_threshold = max(1, int(failures))
        self.base_cooldown_s = max(0.0, float(cooldown_s))
        self.max_cooldown_s = max(self.base_cooldown_s, float(max_cooldown_s))
        self.cooldown_s = self.base_cooldown_s
        self.clock = clock
        self.on_change = on_change
        self.consecutive_failures = 0
        self._state: State = "closed"
        self._opened_at = 0.0
        self._probe_started: float | None = None

    # -- queries ---------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        self._tick()
        return self._state

    def retry_in(self) -> float:
        """Seconds until the next probe is allowed (0 when closed or half-open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - self.clock())

    def allow(self) -> bool:
        """May a request go to the endpoint now? In half-open state this hands out the single
        probe; the caller must then report `record_success`, `record_failure` or `abandon`."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self.clock()
        # A probe that never reported back (its task died without `abandon`) must not wedge the
        # breaker: after one more cooldown another probe may go.
        stale = self._probe_started is not None and now - self._probe_started > max(self.cooldown_s, 1.0)
        if self._probe_started is None or stale:
            self._probe_started = now
            return True
        return False

    # -- outcomes --------------------------------------------------------------------------------
    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._probe_started = None
        self.cooldown_s = self.base_cooldown_s
        if self._state != "closed":
            self._set("closed")

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        state = self.state
        if state == "half_open":
            # The probe failed: the endpoint is still down, wait twice as long this time.
            self._probe_started = None
            self.cooldown_s = min(self.max_cooldown_s, max(self.cooldown_s * 2, self.cooldown_s))
            self._open()
        elif state == "closed" and self.consecutive_failures >= self.failure_threshold:
            self._open()
        # open: a request started before the breaker opened failed late; nothing new learned.

    def trip(self, cooldown_s: float) -> None:
        """Open now for at least `cooldown_s` (the server said so: a 429 or 503 with Retry-After), at
        most `max_cooldown_s`."""
        self.consecutive_failures = max(self.consecutive_failures, self.failure_threshold)
        self._probe_started = None
        self.cooldown_s = min(self.max_cooldown_s, max(self.cooldown_s, cooldown_s))
        self._open()

    def abandon(self) -> None:
        """The probe was cancelled (superseded keystroke) before it could tell us anything."""
        self._probe_started = None

    # -- internals -------------------------------------------------------------------------------
    def _open(self) -> None:
        self._opened_at = self.clock()
        self._set("open")

    def _tick(self) -> None:
        if self._state == "open" and self.clock() >= self._opened_at + self.cooldown_s:
            self._probe_started = None
            self._set("half_open")

    def _set(self, new: State) -> None:
        old, self._state = self._state, new
        if old != new and self.on_change is not None:
            self.on_change(old, new)

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self._state}, failures={self.consecutive_failures}/"
            f"{self.failure_threshold}, cooldown_s={self.cooldown_s})"
        )
