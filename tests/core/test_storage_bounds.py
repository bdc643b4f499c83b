"""Storage that is stuck or fails answers 503 (with Retry-After, so the provider retries) within the configured
bound and stores nothing, over the real HTTP path, on SQLite and PostgreSQL; a batch webhook is stored whole or not
at all, its body once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.harness import FIXTURES, Bridge, running_bridge, stripe_case
from tests.outbox.conftest import fresh_database

CAPTURE = {"capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]}}
#: configured waits (seconds) and how long a test lets a request take before calling it a hang: the answer is due
#: after about one or two waits; the margin only absorbs a loaded machine
WAIT = 0.5
HANG = 20.0
GOCARDLESS_SECRET = "gocardless-secret-for-tests"


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"error": "storage unavailable, retry later"}


async def stored_webhooks(bridge: Bridge) -> int:
    response = await bridge.ops("GET", "/ops/outbox")
    assert response.status_code == 200
    return sum(response.json()["webhooks"].values())


@contextlib.asynccontextmanager
async def bridge_on(kind: str, tmp_path: Path, **outbox: Any) -> AsyncIterator[tuple[Bridge, str]]:
    """The app on a fresh SQLite file or PostgreSQL database; yields it and the store's location."""
    async with contextlib.AsyncExitStack() as stack:
        if kind == "sqlite":
            where = str(tmp_path / "outbox.db")
        else:
            where = await stack.enter_async_context(fresh_database())
            outbox.setdefault("url", where)
        extra = {
            "outbox": outbox,
            "sources": {"gocardless": {"provider": "gocardless", "secrets": [GOCARDLESS_SECRET]}},
        }
        bridge = await stack.enter_async_context(
            running_bridge(tmp_path, destinations=CAPTURE, dispatch=False, extra=extra)
        )
        yield bridge, where


# -- PostgreSQL: a locked table, an exhausted pool --------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_locked_table_and_exhausted_pool_answer_503_within_the_bound(tmp_path: Path) -> None:
    async with fresh_database() as dsn:
        timeouts = {"acquire_timeout_seconds": WAIT, "statement_timeout_seconds": WAIT}
        async with bridge_on("postgres", tmp_path, url=f"{dsn}?max_size=1", **timeouts) as (bridge, _):
            locker = await asyncpg.connect(dsn)
            try:
                async with locker.transaction():
                    await locker.execute("LOCK TABLE webhooks IN ACCESS EXCLUSIVE MODE")
                    # one request waits on the lock (statement timeout) holding the pool's only connection, the
                    # other waits for that connection (acquire timeout)
                    answers = await asyncio.wait_for(
                        asyncio.gather(
                            bridge.post_stripe(stripe_case("checkout.session.completed")),
                            bridge.post_stripe(stripe_case("charge.refunded")),
                        ),
                        HANG,
                    )
                    for answer in answers:
                        assert_unavailable(answer)
            finally:
                await locker.close()
            # nothing of either was stored: the provider's retry is accepted and stored once
            retry = await bridge.post_stripe(stripe_case("checkout.session.completed"))
            assert (retry.status_code, retry.json()["status"]) == (200, "accepted")
            assert await stored_webhooks(bridge) == 1


# -- SQLite: another process holds the write lock ----------------------------------------------------------------

HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


async def test_sqlite_write_lock_held_by_another_process_answers_503_within_the_bound(tmp_path: Path) -> None:
    async with bridge_on("sqlite", tmp_path, acquire_timeout_seconds=WAIT) as (bridge, db):
        holder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOLD_WRITE_LOCK,
            db,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert await asyncio.wait_for(holder.stdout.readline(), HANG) == b"locked\n"
            answer = await asyncio.wait_for(bridge.post_stripe(stripe_case("checkout.session.completed")), HANG)
            assert_unavailable(answer)
        finally:
            holder.stdin.close()
            await holder.wait()
        retry = await bridge.post_stripe(stripe_case("checkout.session.completed"))
        assert (retry.status_code, retry.json()["status"]) == (200, "accepted")
        assert await stored_webhooks(bridge) == 1


# -- a batch is stored whole or not at all, its body once --------------------------------------------------------

FAIL_ON_LAST = {
    "sqlite": (
        "CREATE TRIGGER refuse BEFORE INSERT ON deliveries WHEN NEW.event_id = 'SBLAST:started' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        "DROP TRIGGER refuse",
    ),
    "postgres": (
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.event_id = 'SBLAST:started' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER refuse BEFORE INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION refuse()",
        "DROP TRIGGER refuse ON deliveries",
    ),
}


def gocardless_batch(count: int) -> bytes:
    """A batch of `count` subscriptions.created events shaped like the real fixture; the last one's subscription
    is SBLAST."""
    template = orjson.loads((FIXTURES / "gocardless" / "subscriptions.created+mandates.created.json").read_bytes())
    first = template["events"][0]
    events = []
    for index in range(count):
        subscription = "SBLAST" if index == count - 1 else f"SB{index:06d}"
        events.append({**first, "id": f"EV{index:06d}", "links": {"subscription": subscription}})
    return orjson.dumps({"events": events, "meta": {"webhook_id": "WB000001"}})


async def run_sql(kind: str, where: str, sql: str) -> Any:
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(where, isolation_level=None, timeout=30)) as conn:
            return conn.execute(sql).fetchall()
    conn = await asyncpg.connect(where)
    try:
        return await conn.fetch(sql) if sql.startswith("SELECT") else await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_batch_is_stored_whole_or_not_at_all(tmp_path: Path, kind: str) -> None:
    body = gocardless_batch(300)  # more events than the SQLite writer's group-commit batch (256 ops)
    headers = {"Webhook-Signature": hmac.new(GOCARDLESS_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    async with bridge_on(kind, tmp_path) as (bridge, where):
        install, remove = FAIL_ON_LAST[kind]
        await run_sql(kind, where, install)
        failed = await asyncio.wait_for(bridge.client.post("/webhooks/gocardless", content=body, headers=headers), HANG)
        assert_unavailable(failed)
        assert await stored_webhooks(bridge) == 0
        assert await bridge.deliveries() == []

        await run_sql(kind, where, remove)
        retry = await bridge.client.post("/webhooks/gocardless", content=body, headers=headers)
        assert retry.status_code == 200, retry.text
        assert retry.json()["status"] == "accepted"
        assert len(retry.json()["webhook_ids"]) == 300
        assert await stored_webhooks(bridge) == 300
        assert len(await bridge.deliveries(limit=500)) == 300
        [(requests, stored_bytes)] = await run_sql(
            kind, where, "SELECT count(*), sum(length(body)) FROM webhook_requests"
        )
        assert (requests, stored_bytes) == (1, len(body))
