"""A stalled PostgreSQL (a table locked by someone else) costs bounded waits: a webhook gets 503 with Retry-After
within the statement timeout, and the dispatcher's claim fails, is logged and counted, and is tried again; once
the lock goes, everything flows. The real app in-process on a fresh database."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.core.dispatch_helpers import recorder
from tests.core.test_delivery import eventually
from tests.harness import running_bridge
from tests.outbox.conftest import fresh_database
from tests.scaleout.support import purchase

pytestmark = pytest.mark.postgres


async def test_a_locked_table_gives_503s_and_retried_claims_not_hangs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with fresh_database() as dsn, recorder() as (sink, url):
        extra: dict[str, Any] = {
            "outbox": {"url": dsn, "acquire_timeout_seconds": 0.5, "statement_timeout_seconds": 0.2},
            "dispatcher": {"poll_seconds": 0.1},
        }
        destinations = {"hook": {"type": "http", "url": f"{url}/hook", "events": ["purchase"]}}
        async with running_bridge(tmp_path, destinations=destinations, extra=extra) as bridge:
            dispatcher = bridge.state.dispatcher
            assert dispatcher is not None
            locker = await asyncpg.connect(dsn)
            try:
                async with locker.transaction():
                    await locker.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
                    with caplog.at_level(logging.ERROR, logger="bridge.dispatcher"):
                        refused = await bridge.post_stripe(purchase(0, 0))
                        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
                        await eventually(lambda: dispatcher.claim_failures >= 2)  # failed, logged, tried again
                    assert any("claim failed" in r.getMessage() for r in caplog.records)
            finally:
                await locker.close()
            assert (await bridge.post_stripe(purchase(1, 0))).status_code == 200
            await eventually(lambda: len(sink.requests) == 1)
            assert sink.requests[0]["json"]["id"] == "pi_scale_1"
            assert dispatcher.claim_restarts == 0  # the loop never died: it waited and went on
            status = (await bridge.ops("GET", "/ops/outbox")).json()
            assert status["dispatcher"]["claim_failures"] >= 2
