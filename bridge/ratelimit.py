"""Per-destination rate limiting: exact sliding windows plus a pause that 429 answers adapt.

A documented limit such as "1000 requests per minute" means no 60-second window may hold more than 1000
requests. A token bucket of 1000 refilled at 1000/min lets 2000 through in the worst window, so each limit is
kept as a sliding-window log of send times (memory: one float per request in the window). Several limits are
enforced together (Zenovay: 60 per 10 s and 5000 per hour).

The destination counts a request when it arrives, which is up to one request latency after we count it; so
each window is held open for the window plus the longest latency seen (`slack`, at most a quarter of the
shortest window), or the first request of a window could still be inside the destination's window when the
last one arrives.

A 429 pauses the lane until its Retry-After (or an exponential cool-down when it gives none), never longer than
`max_pause` (the retry policy's `max_retry_after`, the same cap the delivery's own next attempt obeys), and halves
the admitted rate until a full (shortest) window passes without another 429. Concurrent requests that all come
back 429 together halve it once.

Pure arithmetic on times passed in; the dispatcher does the waiting.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from bridge.destinations.base import RateLimit
from bridge.retry import RetryPolicy

#: the longest pause after a 429 without Retry-After (the cool-down doubles from 1 s up to this)
MAX_COOLDOWN = 60.0


class _Window:
    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.sent: deque[float] = deque()

    def delay(self, now: float, allowed: int, slack: float) -> float:
        span = self.limit.per_seconds + slack
        horizon = now - span
        sent = self.sent
        while sent and sent[0] <= horizon:
            sent.popleft()
        if len(sent) < allowed:
            return 0.0
        # the request that would make room is the (len - allowed + 1)-th oldest
        return max(sent[len(sent) - allowed] + span - now, 0.0)


class RateLimiter:
    """Admits a request when every window has room and no 429 pause is running."""

    def __init__(self, limits: Sequence[RateLimit], max_pause: float = RetryPolicy.max_retry_after) -> None:
        self.windows = [_Window(limit) for limit in limits]
        self.max_pause = max_pause
        self.paused_until = 0.0
        self.cooldown = 0.0
        self.factor = 1.0  # fraction of the documented rate admitted after 429s
        self.last_throttled = float("-inf")
        self.slack = 0.0
        self._shortest = min((w.limit.per_seconds for w in self.windows), default=60.0)

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request may go (0: go now)."""
        wait = max(self.paused_until - now, 0.0)
        if self.factor < 1.0 and now - self.last_throttled > self._shortest:
            self.factor = 1.0
        for window in self.windows:
            allowed = max(1, int(window.limit.requests * self.factor))
            wait = max(wait, window.delay(now, allowed, self.slack))
        return wait

    def record(self, now: float) -> None:
        """Count a request sent at `now`."""
        for window in self.windows:
            window.sent.append(now)

    def observe(self, latency: float) -> None:
        """A request took `latency` seconds (clock seconds) from being counted to its answer: widen the windows'
        slack to cover the longest seen, up to a quarter of the shortest window."""
        self.slack = min(max(latency, self.slack), self._shortest / 4)

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
