"""Per-destination rate limiting: exact sliding windows plus a pause that 429 answers adapt.

A documented limit such as "1000 requests per minute" means no 60-second window may hold more than 1000
requests. A token bucket of 1000 refilled at 1000/min lets 2000 through in the worst window, so each limit is
kept as a sliding-window log (memory: one entry per request in the window). Several limits are enforced
together (Zenovay: 60 per 10 s and 5000 per hour).

The destination counts a request when it arrives, which is somewhere between the moment we count it (`record`)
and the moment its answer comes back (`answered`); under load that gap can be long (a busy event loop, a slow
connection). So a request holds its place in every window from `record` until one window after its answer, and
indefinitely while it is in flight: whenever a new request arrives, every request the destination may still
count in its window is in ours. A request that is never sent gives its place back (`cancel`).

The windows outlive the process: a limiter that takes over a destination (a restart, or another replica taking
the lane over) is first seeded with the requests already sent (`seed`: each holds its place until one window
after its answer, as if this limiter had sent it) and the pause state its predecessor left (`restore`). Where they
are kept is the outbox's business (bridge/outbox/base.py, lanes); this module stays arithmetic.

A 429 pauses the lane until its Retry-After (or an exponential cool-down when it gives none), never longer than
`max_pause` (the retry policy's `max_retry_after`, the same cap the delivery's own next attempt obeys), and halves
the admitted rate until a full (shortest) window passes without another 429. Concurrent requests that all come
back 429 together halve it once.

Pure arithmetic on times passed in; the dispatcher does the waiting.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence

from bridge.destinations.base import RateLimit
from bridge.retry import RetryPolicy

#: the longest pause after a 429 without Retry-After (the cool-down doubles from 1 s up to this)
MAX_COOLDOWN = 60.0
_IN_FLIGHT = math.inf


class _Window:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        #: (answer time, or inf while in flight; ticket), sorted: expired entries at the front, in flight at the end
        self.log: list[tuple[float, int]] = []

    def delay(self, now: float, allowed: int) -> float:
        per = self.limit.per_seconds
        log = self.log
        expired = bisect.bisect_right(log, (now - per, math.inf))
        if expired:
            del log[:expired]
        if len(log) < allowed:
            return 0.0
        # the entry whose expiry would make room is the (len - allowed + 1)-th oldest
        answered_at = log[len(log) - allowed][0]
        if answered_at == _IN_FLIGHT:
            return per  # an answer still to come holds its place at least one window from now
        return max(answered_at + per - now, 0.0)

    def answered(self, ticket: int, at: float) -> None:
        if self.cancel(ticket):
            bisect.insort(self.log, (at, ticket))

    def cancel(self, ticket: int) -> bool:
        """Remove the in-flight entry `ticket`; whether it was there."""
        index = bisect.bisect_left(self.log, (_IN_FLIGHT, ticket))
        if index < len(self.log) and self.log[index] == (_IN_FLIGHT, ticket):
            del self.log[index]
            return True
        return False


class RateLimiter:
    """Admits a request when every window has room and no 429 pause is running."""

    def __init__(self, limits: Sequence[RateLimit], max_pause: float = RetryPolicy.max_retry_after) -> None:
        self.windows = [_Window(limit) for limit in limits]
        self.max_pause = max_pause
        self.paused_until = 0.0
        self.cooldown = 0.0
        self.factor = 1.0  # fraction of the documented rate admitted after 429s
        self.last_throttled = float("-inf")
        self._shortest = min((w.limit.per_seconds for w in self.windows), default=60.0)
        self._tickets = itertools.count()

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request may go (0: go now)."""
        wait = max(self.paused_until - now, 0.0)
        if self.factor < 1.0 and now - self.last_throttled > self._shortest:
            self.factor = 1.0
        for window in self.windows:
            allowed = max(1, int(window.limit.requests * self.factor))
            wait = max(wait, window.delay(now, allowed))
        return wait

    def record(self) -> int:
        """Count a request about to be sent; returns its ticket for `answered` or `cancel`. Until one of those,
        the request is in flight and holds its place in every window."""
        ticket = next(self._tickets)
        for window in self.windows:
            window.log.append((_IN_FLIGHT, ticket))  # in flight sorts last
        return ticket

    def answered(self, ticket: int, at: float) -> None:
        """The request's answer (or its failure) came back at `at`: the destination counted it by then, so it
        holds its place until one window after `at`."""
        for window in self.windows:
            window.answered(ticket, at)

    def cancel(self, ticket: int) -> None:
        """The request was never sent: give its place back (nothing if it was answered already)."""
        for window in self.windows:
            window.cancel(ticket)

    def throttled(self, now: float, retry_after: float | None) -> None:
        """The destination answered 429: pause, and admit less for a while."""
        if retry_after is None:
            self.cooldown = min(max(self.cooldown * 2, 1.0), MAX_COOLDOWN)
            pause = self.cooldown
        else:
            pause = retry_after
        pause = min(max(pause, 0.0), self.max_pause)
        self.paused_until = max(self.paused_until, now + pause)
        if now - self.last_throttled > self._shortest:  # one halving per burst of 429s
            self.factor = max(self.factor / 2, 1 / 64)
        self.last_throttled = now

    def succeeded(self) -> None:
        self.cooldown = 0.0

    def seed(self, answered: Iterable[float]) -> None:
        """Count requests this limiter did not send (an earlier process, another replica): each answered at the
        given time, so each holds its place until one window after it."""
        for at in answered:
            ticket = next(self._tickets)
            for window in self.windows:
                bisect.insort(window.log, (at, ticket))

    def state(self) -> tuple[float, float, float | None, float]:
        """(paused_until, factor, last throttled at or None, cooldown): what `restore` takes back."""
        throttled = None if self.last_throttled == float("-inf") else self.last_throttled
        return self.paused_until, self.factor, throttled, self.cooldown

    def restore(self, paused_until: float, factor: float, throttled_at: float | None, cooldown: float) -> None:
        """Take over a predecessor's pause and reduced rate (never loosening what this limiter has already)."""
        if throttled_at is not None:  # a pause only ever follows a 429, and no 429 pauses longer than max_pause
            self.paused_until = max(self.paused_until, min(paused_until, throttled_at + self.max_pause))
            self.last_throttled = max(self.last_throttled, throttled_at)
        self.factor = min(self.factor, max(factor, 1 / 64))
        self.cooldown = max(self.cooldown, min(cooldown, MAX_COOLDOWN))
