"""Storage stalls (short version of `python -m bench.faults stalls`)."""

from pathlib import Path

import pytest

from bench.faults import stalls
from tests.faults.conftest import can_postgres_cluster, finish, require

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]


async def test_storage_stalls_answer_503_in_time_and_lose_nothing(tmp_path: Path) -> None:
    require(can_postgres_cluster(), "needs the PostgreSQL server binaries to start a private cluster")
    finish(await stalls.run(False, tmp_path))
