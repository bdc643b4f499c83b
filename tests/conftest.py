"""Suite-wide hygiene: a test that configures logging for a whole process (`bridge serve`/`demo` run in-process
through `bridge.cli.main`) must not leave its handler, pointing at that test's captured and since closed stderr,
or a `logging.disable` level behind for the tests after it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level, disabled = root.handlers[:], root.level, logging.root.manager.disable
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.disable(disabled)
