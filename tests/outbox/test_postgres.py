"""What only the PostgreSQL outbox promises: several replicas on one database."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import orjson
import pytest

from bridge.errors import OutboxError, OutboxUnavailable
from bridge.outbox.base import NewDelivery, Ordering
from bridge.outbox.postgres import PostgresOutbox
from bridge.outbox.postgres_schema import MIGRATIONS
from bridge.outbox.sqlite_schema import Migration
from tests.outbox.support import T0, delivery, ingest, result, webhook

pytestmark = pytest.mark.postgres

Replicas = Callable[[int], Awaitable[list[PostgresOutbox]]]
T = TypeVar("T")


@pytest.fixture
async def replicas(pg_dsn: str) -> AsyncIterator[Replicas]:
    """Open n outboxes on one fresh database, as n bridge processes would (each with its own pool)."""
    opened: list[PostgresOutbox] = []

    async def make(n: int) -> list[PostgresOutbox]:
        batch = [PostgresOutbox(pg_dsn, min_size=1, max_size=3) for _ in range(n)]
        await asyncio.gather(*(outbox.open() for outbox in batch))  # migrations race: the advisory lock serialises
        opened.extend(batch)
        return batch

    yield make
    for outbox in opened:
        await outbox.close()


async def test_replicas_opening_together_migrate_once(replicas: Replicas, pg_dsn: str) -> None:
    await replicas(4)
    conn = await asyncpg.connect(pg_dsn)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [m.version for m in MIGRATIONS] == [1, 2, 3, 4, 5]
    finally:
        await conn.close()


async def test_concurrent_claimers_never_share_a_row(replicas: Replicas) -> None:
    outboxes = await replicas(4)
    for i in range(0, 300, 50):
        await asyncio.gather(
            *(
                ingest(outboxes[0], webhook(f"evt_{j}", delivery("conv", f"o{j}"), received_at=T0 + j))
                for j in range(i, i + 50)
            )
        )
    claimed: list[list[int]] = []

    async def claimer(outbox: PostgresOutbox, owner: str) -> None:
        mine: list[int] = []
        while batch := await outbox.claim("conv", 7, T0 + 1000, 60, owner):
            mine.extend(d.id for d in batch)
            assert all(d.lease_owner == owner for d in batch)
        claimed.append(mine)

    # two claimers per replica, so rows are contended both within a pool and across pools
    await asyncio.gather(*(claimer(outboxes[k % 4], f"w{k}") for k in range(8)))
    everything = [i for mine in claimed for i in mine]
    assert len(everything) == 300
    assert len(set(everything)) == 300
    assert sum(1 for mine in claimed if mine) > 1  # the work really was shared


async def test_duplicates_across_replicas_store_once(replicas: Replicas) -> None:
    a, b = await replicas(2)
    copies = [ingest(outbox, webhook("evt_1", delivery("conv", "o1"))) for outbox in (a, b) * 10]
    results = await asyncio.gather(*copies)
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.webhook_id for r in results}) == 1


async def test_overlapping_facts_from_concurrent_ingests(replicas: Replicas) -> None:
    outboxes = await replicas(3)
    rng = random.Random(7)
    keys = [(dest, f"o{i}") for dest in ("conv", "zen", "ga4") for i in range(10)]
    webhooks = []
    for n in range(30):
        chosen = rng.sample(keys, 8)  # random order: would deadlock without ordered inserts
        webhooks.append(webhook(f"evt_{n}", *(delivery(dest, eid) for dest, eid in chosen)))
    results = await asyncio.gather(*(ingest(outboxes[n % 3], w) for n, w in enumerate(webhooks)))
    created = sum(r.deliveries_created for r in results)
    distinct = {(d.destination, d.event_id) for w in webhooks for d in w.webhooks[0].deliveries}
    assert created == len(distinct)
    rows, _ = await outboxes[0].list_deliveries(limit=1000)
    assert len(rows) == len(distinct)


async def test_zombie_completion_is_rejected_across_replicas(replicas: Replicas) -> None:
    a, b = await replicas(2)
    await ingest(a, webhook("evt_1", delivery("conv", "o1")))
    [first] = await a.claim("conv", 1, T0, 10, "a-1")
    [second] = await b.claim("conv", 1, T0 + 11, 10, "b-1")
    both = await asyncio.gather(
        a.complete([result(first, "a-1", "delivered", T0 + 12)]),
        b.complete([result(second, "b-1", "retry", T0 + 12, next_attempt_at=T0 + 99)]),
    )
    assert list(both) == [[False], [True]]
    row = await a.get_delivery(first.id)
    assert row is not None
    assert (row["status"], row["attempt_count"], len(row["attempts"])) == ("pending", 1, 2)


async def test_unreachable_server_is_unavailable() -> None:
    outbox = PostgresOutbox("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(OutboxUnavailable):
        await outbox.open()
    with pytest.raises(OutboxUnavailable):
        await ingest(outbox, webhook("evt_1"))


async def test_statement_timeout_bounds_writes_but_not_migrations(pg_dsn: str) -> None:
    slow = Migration(99, "slow", ("SELECT pg_sleep(1.5)",))

    class WithSlowMigration(PostgresOutbox):
        _migrations = (*MIGRATIONS, slow)

    outbox = WithSlowMigration(pg_dsn, max_size=2, acquire_timeout=0.2, statement_timeout=0.1)
    await outbox.open()  # the migration outlasts the statement timeout and the client's command timeout
    try:
        await ingest(outbox, webhook("evt_1", delivery("conv", "o1")))
        locker = await asyncpg.connect(pg_dsn)
        try:
            async with locker.transaction():
                await locker.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(OutboxUnavailable, match="statement timeout"):
                    await outbox.ingest(webhook("evt_2", delivery("conv", "o2")))
        finally:
            await locker.close()
        assert (await ingest(outbox, webhook("evt_2", delivery("conv", "o2")))).deliveries_created == 1
    finally:
        await outbox.close()


class PausedClaims(PostgresOutbox):
    """Holds each write transaction open after its work is done, before COMMIT, while `gate` is set and closed:
    `inside` is set once one is held there."""

    gate: asyncio.Event | None = None
    inside: asyncio.Event

    async def _write(self, work: Callable[[Any], Awaitable[T]]) -> T:
        async def held(conn: Any) -> T:
            out = await work(conn)
            if self.gate is not None:
                self.inside.set()
                await self.gate.wait()
            return out

        return await super()._write(held)


async def waiting_on_the_claim_turn(pg_dsn: str) -> bool:
    admin = await asyncpg.connect(pg_dsn)
    try:
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid IS NOT NULL"
        )
    finally:
        await admin.close()
    return bool(waiting)


async def test_a_late_earlier_event_is_not_leased_beside_its_successor_by_another_claimer(
    replicas: Replicas, pg_dsn: str
) -> None:
    """The interleaving the per-destination claim turn (q.CLAIM_TURN) exists for, driven step by step: claimer X
    has leased a key's only delivery (e2) and not committed yet; an earlier event of the key (e1) arrives; claimer
    Y looks. Y's snapshot sees e2 still pending (not leased) and e1 first of its key: without the turn Y leases e1
    while X leases e2, two of one key out at once. With it, Y waits for X's commit, then sees e2 leased."""
    [store] = await replicas(1)
    x = PausedClaims(pg_dsn, min_size=1, max_size=2)
    await x.open()
    try:
        await ingest(store, webhook("evt_2", ordered_delivery("e2", "k", T0 + 5)))
        x.gate, x.inside = asyncio.Event(), asyncio.Event()
        claim_x = asyncio.create_task(x.claim("sub", 5, T0 + 10, 60, "x:1"))
        await asyncio.wait_for(x.inside.wait(), 30)  # X has e2 locked and leased, uncommitted
        await ingest(store, webhook("evt_1", ordered_delivery("e1", "k", T0 + 3)))  # the late, earlier event
        claim_y = asyncio.create_task(store.claim("sub", 5, T0 + 10, 60, "y:1"))
        # Y either finishes at once (no turn: it did not wait for X) or waits for X's turn to end
        for _ in range(600):
            if claim_y.done() or await waiting_on_the_claim_turn(pg_dsn):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("claimer Y neither finished nor waited for its turn")
        x.gate.set()
        leased_x, leased_y = await asyncio.wait_for(asyncio.gather(claim_x, claim_y), 30)
        assert [d.event_id for d in leased_x] == ["e2"]
        assert [d.event_id for d in leased_y] == [], "two deliveries of one key leased at once"
    finally:
        x.gate = None
        await x.close()


async def test_work_committed_by_one_replica_wakes_the_others(replicas: Replicas) -> None:
    a, b = await replicas(2)
    woken: asyncio.Queue[object] = asyncio.Queue()
    await b.watch(woken.put_nowait, lambda: woken.put_nowait("lanes"))
    assert b.listener is not None
    await asyncio.wait_for(b.listener.listening.wait(), 30)
    assert await asyncio.wait_for(woken.get(), 30) is None  # (on listening: anything may have been missed)
    await ingest(b, webhook("evt_own", delivery("zen", "o0")))  # b's own work: its dispatcher knows already
    while b.announcer.sent < 1:
        await asyncio.sleep(0.01)
    await ingest(a, webhook("evt_1", delivery("conv", "o1"), delivery("srv", "o1")))
    assert await asyncio.wait_for(woken.get(), 30) == ["conv", "srv"]
    assert await a.hold_lanes(["conv"], "a", T0, 30) == ["conv"]
    await a.release_lanes(["conv"], "a")
    assert await asyncio.wait_for(woken.get(), 30) == "lanes"
    [d] = await a.claim("conv", 1, T0, 30, "a:1")
    await a.complete([result(d, "a:1", "dead", T0, status_code=400)])
    assert await a.skip([d.id], T0 + 1) == 1
    assert await asyncio.wait_for(woken.get(), 30) == ["conv"]
    assert woken.empty()


async def test_what_is_announced_just_before_close_is_still_sent(replicas: Replicas) -> None:
    """A replica that stops releases its lanes and closes its outbox right after: the NOTIFYs named before the
    close go out (they used to be cancelled on their way, and the other replicas waited for a lane renewal)."""
    a, b = await replicas(2)
    woken: asyncio.Queue[object] = asyncio.Queue()
    await b.watch(woken.put_nowait, lambda: woken.put_nowait("lanes"))
    assert b.listener is not None
    await asyncio.wait_for(b.listener.listening.wait(), 30)
    assert await asyncio.wait_for(woken.get(), 30) is None
    assert await a.hold_lanes(["conv"], "a", T0, 30) == ["conv"]
    await a.release_lanes(["conv"], "a")
    a.announcer.work(["srv"])
    await a.close()
    got = [await asyncio.wait_for(woken.get(), 30) for _ in range(2)]
    assert "lanes" in got and ["srv"] in got


async def test_an_older_bridge_refuses_a_database_a_newer_one_migrated(pg_dsn: str) -> None:
    newer = PostgresOutbox(pg_dsn)
    await newer.open()
    await newer.close()

    class Older(PostgresOutbox):
        _migrations = MIGRATIONS[:-1]

    with pytest.raises(OutboxError, match=f"schema version {len(MIGRATIONS)} .* older than the database"):
        await Older(pg_dsn).open()


def ordered_delivery(event_id: str, key: str, at: float) -> NewDelivery:
    payload = orjson.dumps({"id": event_id, "key": key, "at": at})
    return NewDelivery("sub", "subscription_renewed", event_id, payload, Ordering(key, at))


async def test_the_listener_reconnects_when_its_connection_is_cut(replicas: Replicas, pg_dsn: str) -> None:
    a, b = await replicas(2)
    woken: asyncio.Queue[object] = asyncio.Queue()
    await b.watch(woken.put_nowait, lambda: None)
    assert b.listener is not None
    assert await asyncio.wait_for(woken.get(), 30) is None
    admin = await asyncpg.connect(pg_dsn)
    try:
        cut = await admin.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%') AS t"
        )
    finally:
        await admin.close()
    assert cut == 1
    assert await asyncio.wait_for(woken.get(), 30) is None  # back: anything may have been missed, wake everything
    await ingest(a, webhook("evt_1", delivery("conv", "o1")))
    assert await asyncio.wait_for(woken.get(), 30) == ["conv"]
