from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from bridge.retry import DEFAULT_SCHEDULE, RetryPolicy, parse_retry_after

NOW = 1_700_000_000.0


def test_default_schedule_spans_more_than_a_day() -> None:
    assert RetryPolicy().total_window() >= 24 * 3600
    assert list(DEFAULT_SCHEDULE) == sorted(DEFAULT_SCHEDULE)


def test_delays_grow_stay_within_jitter_and_end() -> None:
    policy = RetryPolicy(jitter=0.2)
    rng = random.Random(7)
    for attempt, base in enumerate(policy.schedule, start=1):
        for _ in range(50):
            at = policy.next_attempt_at(attempt, NOW, rng=rng)
            assert at is not None
            assert base * 0.8 <= at - NOW <= base * 1.2
    assert policy.next_attempt_at(len(policy.schedule) + 1, NOW) is None


def test_retry_after_extends_the_wait_but_is_capped() -> None:
    policy = RetryPolicy(schedule=(10, 20), jitter=0, max_retry_after=3600)
    assert policy.next_attempt_at(1, NOW, retry_after=120) == NOW + 120
    assert policy.next_attempt_at(1, NOW, retry_after=5) == NOW + 10  # shorter than our own backoff
    assert policy.next_attempt_at(1, NOW, retry_after=99_999_999) == NOW + 3600


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("-1", 0.0),
        ("1.5", 1.5),
        ("abc", None),
        ("", None),
        (None, None),
        ("nan", None),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 90.0),
        (format_datetime(datetime.fromtimestamp(NOW - 90, UTC), usegmt=True), 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected
