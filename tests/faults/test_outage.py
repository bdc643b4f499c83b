"""A long outage on a scaled clock (short version of `python -m bench.faults outage`: 1,000 deliveries, 2 h
down, the retry schedule divided by 12)."""

from pathlib import Path

import pytest

from bench.faults import outage
from tests.faults.conftest import finish

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_a_long_outage_drains_within_the_horizon_at_the_documented_rate(tmp_path: Path) -> None:
    finish(await outage.run(False, tmp_path))
