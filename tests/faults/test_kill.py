"""kill -9 under load (short version of `python -m bench.faults kill`)."""

from pathlib import Path

import pytest

from bench.faults import kill
from tests.faults.conftest import finish

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_sigkill_under_load_loses_no_acknowledged_webhook(tmp_path: Path) -> None:
    result = await kill.run(False, tmp_path, seed=7)
    assert result.figures["kills"] == 3 and result.figures["acknowledged"] > 100, result.line()
    finish(result)
