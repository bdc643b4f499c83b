"""A restart storm of three replicas on PostgreSQL (short version of `python -m bench.faults storm`)."""

from pathlib import Path

import pytest

from bench.faults import storm
from tests.faults.conftest import can_postgres_cluster, finish, require

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

async def test_killing_one_replica_repeatedly_loses_nothing(tmp_path: Path) -> None:
    require(can_postgres_cluster(), "needs the PostgreSQL server binaries to start a private cluster")
    result = await storm.run(False, tmp_path, seed=5)
    assert result.figures["kills"] == 3 and result.figures["acknowledged"] > 100, result.line()
    finish(result)  # a sink refusal (429) would be the fleet exceeding a documented limit: a failure
