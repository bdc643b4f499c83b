from __future__ import annotations

import random

from bridge.destinations.base import RateLimit
from bridge.ratelimit import RateLimiter


def simulate(limiter: RateLimiter, requests: int, start: float = 0.0) -> list[float]:
    """Send `requests` as fast as the limiter allows; return the send times."""
    now, sent = start, []
    rng = random.Random(1)
    while len(sent) < requests:
        wait = limiter.delay(now)
        if wait > 0:
            now += wait + rng.random() * 1e-6
            continue
        limiter.record(now)
        sent.append(now)
        now += rng.random() * 0.001
    return sent


def max_in_window(times: list[float], window: float) -> int:
    best, left = 0, 0
    for right, t in enumerate(times):
        while times[left] <= t - window:
            left += 1
        best = max(best, right - left + 1)
    return best


def test_no_window_ever_exceeds_any_limit() -> None:
    limiter = RateLimiter([RateLimit(60, 10.0), RateLimit(500, 3600.0)])
    times = simulate(limiter, 700)
    assert max_in_window(times, 10.0) <= 60
    assert max_in_window(times, 3600.0) <= 500
    assert times[-1] >= 3600  # the hourly limit really held the 501st request back


def test_a_429_pauses_for_retry_after_and_slows_down() -> None:
    limiter = RateLimiter([RateLimit(100, 60.0)])
    limiter.throttled(now=10.0, retry_after=30.0)
    assert limiter.delay(10.0) == 30.0
    assert limiter.delay(40.0) == 0.0
    times = simulate(limiter, 80, start=40.0)
    assert len([t for t in times if t < 70.0]) == 50  # rate halved until a window (60 s) passes without a 429
    limiter2 = RateLimiter([RateLimit(100, 60.0)])
    limiter2.throttled(now=0.0, retry_after=None)
    assert limiter2.delay(0.0) == 1.0  # no Retry-After: exponential cool-down starting at 1 s
    limiter2.throttled(now=1.0, retry_after=None)
    assert limiter2.delay(1.0) == 2.0


def test_rate_recovers_after_a_quiet_window() -> None:
    limiter = RateLimiter([RateLimit(10, 1.0)])
    limiter.throttled(now=0.0, retry_after=0.0)
    assert limiter.factor < 1
    limiter.delay(5.0)
    assert limiter.factor == 1.0


def test_a_429_pause_never_exceeds_max_pause() -> None:
    limiter = RateLimiter([RateLimit(100, 60.0)], max_pause=300.0)
    limiter.throttled(now=10.0, retry_after=999_999_999.0)
    assert limiter.paused_until == 310.0
    assert limiter.delay(10.0) == 300.0
    short = RateLimiter([RateLimit(100, 60.0)], max_pause=0.5)
    short.throttled(now=0.0, retry_after=None)  # the cool-down obeys the cap too
    assert short.delay(0.0) == 0.5
