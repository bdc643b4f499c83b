"""The destination fault matrix (short version of `python -m bench.faults destinations`)."""

from pathlib import Path

import pytest

from bench.faults import destinations
from tests.faults.conftest import finish

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_each_destination_fault_gets_its_verdict_and_the_healthy_one_is_unaffected(tmp_path: Path) -> None:
    result = await destinations.run(False, tmp_path)
    assert result.figures["healthy_delivered"] == result.figures["webhooks"] > 0, result.line()
    finish(result)
