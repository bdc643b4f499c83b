"""The backoff policy, as pure functions of (attempt, now, Retry-After). Nothing here sleeps or reads a clock."""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

#: seconds after each failed attempt: 10 s, 30 s, 2 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h, 8 h
#: (12 retries spanning ~32 h, so a destination may be down for a whole day without losing an event).
DEFAULT_SCHEDULE: tuple[float, ...] = (10, 30, 120, 300, 900, 1800, 3600, 7200, 14400, 28800, 28800, 28800)


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed delivery again.

    After the n-th failed attempt (n = 1, 2, …) the delivery waits `schedule[n-1]` seconds, spread by
    ±`jitter` (a fraction) so that a burst of failures does not come back as a burst. A destination's
    `Retry-After` replaces that wait when it is longer, capped at `max_retry_after`. When the schedule is
    exhausted the delivery is dead.
    """

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.2
    max_retry_after: float = 6 * 3600.0

    @property
    def max_attempts(self) -> int:
        """Total attempts, the first one included."""
        return len(self.schedule) + 1

    def total_window(self) -> float:
        """Seconds from the first attempt to the last one, without jitter."""
        return float(sum(self.schedule))

    def next_attempt_at(
        self, attempts: int, now: float, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float | None:
        """When to try again after `attempts` failed attempts (counting the one that just failed), or None
        when the delivery should go dead."""
        if attempts < 1:
            attempts = 1
        if attempts > len(self.schedule):
            return None
        base = float(self.schedule[attempts - 1])
        spread = base * self.jitter
        delay = base + ((rng or random).uniform(-spread, spread) if spread else 0.0)
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.max_retry_after)
        return now + max(delay, 0.0)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent or invalid.
    Negative or past values give 0."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
            return None
        return max(seconds, 0.0)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(moment.timestamp() - now, 0.0)
