"""Property-based fuzzing of POST /webhooks/{source} for every provider (tests/fuzz/strategies.py describes the
requests, tests/fuzz/target.py the properties): unsigned garbage, hostile headers and validly signed hostile
JSON must never cost a 5xx, never store anything when refused, always be answered within a bound, never make a
canonical event larger than the largest accepted body, and never stop the dispatcher (every delivery gets an
attempt, a sentinel purchase posted afterwards reaches every destination). Derandomized: every run sends the
same requests, the KNOWN ones first. The long run of the same generator is `python -m bench.fuzz`.

Every property is checked on every request and all failures are collected, so one run reports every distinct
failure (with a reproducer) instead of stopping at the first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from tests.fuzz.strategies import KNOWN, FuzzInput, fuzz_inputs, one_per_source, sources
from tests.fuzz.target import FuzzThread

EXAMPLES = 500


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzThread]:
    runner = FuzzThread(Path(tmp_path_factory.mktemp("fuzz")))
    quiet = [logging.getLogger(name) for name in ("uvicorn.error", "bridge")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:  # a warning per refused request; the errors are collected by the target
        logger.setLevel(logging.ERROR)
    try:
        with runner:
            yield runner
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


def test_every_source_survives_hostile_requests(fuzz: FuzzThread) -> None:

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.explicit, Phase.generate),  # collected, not shrunk: the state a failure leaves misleads it
        suppress_health_check=list(HealthCheck),
    )
    @given(item=fuzz_inputs())
    def send(item: FuzzInput) -> None:
        fuzz.check(item)

    explicit = [*KNOWN, *one_per_source()]
    for item in explicit:
        send = example(item=item)(send)
    send()
    stats = fuzz.target.stats
    assert stats.requests == EXAMPLES + len(explicit)
    assert {s.name for s in sources()} <= set(stats.sources)
    assert stats.sentinels > 0, "no request reached the dispatcher: the sentinel check never ran"
    if stats.failures:
        pytest.fail(f"{len(stats.distinct())} distinct failures:\n\n{stats.report()}", pytrace=False)
