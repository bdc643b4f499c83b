"""Disk full on a small tmpfs (short version of `python -m bench.faults diskfull`)."""

import os
from pathlib import Path

import pytest

from bench.faults import diskfull
from tests.faults.conftest import finish, require

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


async def test_full_disk_answers_503_writes_nothing_half_and_recovers(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "mounting a tmpfs needs root")
    finish(await diskfull.run(False, tmp_path))
