"""The short version of every fault trial (bench/faults), run against a real `bridge serve` child process.

A trial returns a Result whose `problems` name every promise that did not hold. A test fails on any problem
except those listed as KNOWN for its trial: product defects found by the trials and owned elsewhere, each with
its reproducer in docs/reliability.md. When a known defect shows up, the test is reported as xfail with the
defect's description; once it is fixed the test simply passes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from bench.faults.harness import CLEANUP, Result


def finish(result: Result, known: Mapping[str, str] | None = None) -> None:
    """Fail on every problem not matching a KNOWN prefix; xfail with the defects when only known ones occurred."""
    known = known or {}
    unexpected = [p for p in result.problems if not any(p.startswith(prefix) for prefix in known)]
    assert not unexpected, result.line()
    seen = sorted({why for prefix, why in known.items() if any(p.startswith(prefix) for p in result.problems)})
    if seen:
        pytest.xfail("known product defect(s): " + " | ".join(seen) + "\n" + result.line())


def require(condition: bool, reason: str) -> None:
    """Skip when this machine cannot run the trial, except under CI, where every trial must run."""
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run every fault trial: {reason}")
        pytest.skip(reason)


def can_fuse() -> bool:
    if not (Path("/dev/fuse").exists() and shutil.which("fusermount")):
        return False
    try:
        import fuse  # type: ignore[import-untyped]  # noqa: F401  (loads libfuse.so.2)
    except (ImportError, OSError):
        return False
    return True


def can_postgres_cluster() -> bool:
    return bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))) and (
        os.geteuid() != 0 or shutil.which("runuser") is not None
    )


@pytest.fixture(autouse=True)
def _cleanup() -> object:
    """Whatever a trial started or mounted is gone after its test, passed or not."""
    yield
    CLEANUP.release()
