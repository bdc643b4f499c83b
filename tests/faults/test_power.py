"""Power cuts on a file system that drops unsynced writes (short version of `python -m bench.faults power`):
synchronous=FULL loses nothing, and the same trial catches synchronous=NORMAL losing acknowledged webhooks."""

import os
from pathlib import Path

import pytest

from bench.faults import power
from tests.faults.conftest import can_fuse, finish, require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_power_cuts_lose_nothing_under_full_and_catch_normal(tmp_path: Path) -> None:
    require(os.geteuid() == 0 and can_fuse(), "needs root, /dev/fuse, fusermount and libfuse.so.2")
    result = await power.run(False, tmp_path, seed=11)
    assert result.figures["cuts"] == 4 and result.figures["normal_cuts"] == 4, result.line()
    finish(result)
