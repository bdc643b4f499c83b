"""Model-based test (T10): seeded random interleavings of ingest, claim, complete (also by stale owners), time
passing (lease expiry), release, retry and crash/reopen, checked step by step against a small reference model."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

import pytest

from tests.outbox.conftest import Store
from tests.outbox.support import T0, AnyOutbox, delivery, ingest, result, webhook

DESTINATIONS = ("conv", "zen", "ga4")
Verdict = Literal["delivered", "retry", "dead"]


@dataclass
class Row:
    id: int
    destination: str
    status: str = "pending"
    attempts: int = 0
    next_at: float = 0.0
    lease_until: float | None = None
    owner: str | None = None


@dataclass
class Model:
    """What the outbox should hold, by the contract in bridge/outbox/base.py."""

    webhooks: dict[str, int] = field(default_factory=dict)
    facts: dict[tuple[str, str], Row] = field(default_factory=dict)
    rows: dict[int, Row] = field(default_factory=dict)
    claims: list[tuple[list[int], str]] = field(default_factory=list)

    def claimable(self, destination: str, now: float) -> list[Row]:
        due = [
            row
            for row in self.rows.values()
            if row.destination == destination
            and (
                (row.status == "pending" and row.next_at <= now)
                or (row.status == "in_flight" and row.lease_until is not None and row.lease_until <= now)
            )
        ]
        return sorted(due, key=lambda row: (row.next_at, row.id))

    def complete(self, delivery_id: int, owner: str, verdict: Verdict, next_at: float) -> bool:
        row = self.rows[delivery_id]
        if row.status != "in_flight" or row.owner != owner:
            return False
        row.attempts += 1
        row.owner = row.lease_until = None
        row.status = {"delivered": "delivered", "retry": "pending", "dead": "dead"}[verdict]
        if verdict == "retry":
            row.next_at = next_at
        return True

    def make_due(self, row: Row, now: float) -> bool:
        if row.status == "dead" or (row.status == "pending" and row.next_at > now):
            row.status, row.next_at, row.owner, row.lease_until = "pending", now, None, None
            return True
        return False


class Run:
    def __init__(self, store: Store, outbox: AnyOutbox, seed: int) -> None:
        self.store = store
        self.outbox = outbox
        self.rng = random.Random(seed)
        self.model = Model()
        self.now = T0
        self.claim_count = 0

    async def ingest(self) -> None:
        rng, model = self.rng, self.model
        peid = f"evt_{rng.randrange(12)}"
        facts = [(dest, f"o{rng.randrange(8)}") for dest in rng.sample(DESTINATIONS, rng.randint(0, 3))]
        got = await ingest(self.outbox, webhook(peid, *(delivery(d, e) for d, e in facts), received_at=self.now))
        if peid in model.webhooks:
            assert (got.duplicate, got.webhook_id, got.deliveries_created) == (True, model.webhooks[peid], 0)
            return
        new = [fact for fact in facts if fact not in model.facts]
        assert (got.duplicate, got.deliveries_created) == (False, len(new))
        model.webhooks[peid] = got.webhook_id
        stored = await self.outbox.get_webhook(got.webhook_id)
        assert stored is not None
        assert sorted((d["destination"], d["event_id"]) for d in stored["deliveries"]) == sorted(new)
        for d in stored["deliveries"]:
            row = Row(id=d["id"], destination=d["destination"], next_at=self.now)
            model.facts[(d["destination"], d["event_id"])] = row
            model.rows[row.id] = row

    async def claim(self) -> None:
        destination = self.rng.choice(DESTINATIONS)
        limit, lease = self.rng.randint(1, 4), self.rng.uniform(5, 40)
        self.claim_count += 1
        owner = f"c{self.claim_count}"
        expected = self.model.claimable(destination, self.now)[:limit]
        got = await self.outbox.claim(destination, limit, self.now, lease, owner)
        assert [d.id for d in got] == [row.id for row in expected]
        for d, row in zip(got, expected, strict=True):
            assert (d.attempts, d.lease_owner, d.lease_until) == (row.attempts, owner, self.now + lease)
            row.status, row.owner, row.lease_until = "in_flight", owner, self.now + lease
        if got:
            self.model.claims.append(([d.id for d in got], owner))

    async def complete(self) -> None:
        if not self.model.claims:
            return
        picks = []
        for _ in range(self.rng.randint(1, 3)):
            ids, owner = self.rng.choice(self.model.claims[-6:])  # recent claims, some of them stale by now
            verdict: Verdict = self.rng.choice(["delivered", "retry", "retry", "dead"])
            picks.append((self.rng.choice(ids), owner, verdict, self.now + self.rng.uniform(1, 30)))
        expected = [self.model.complete(i, owner, verdict, at) for i, owner, verdict, at in picks]
        results = [
            result(i, owner, verdict, self.now, next_attempt_at=at, latency_ms=0.0) for i, owner, verdict, at in picks
        ]
        assert await self.outbox.complete(results) == expected

    async def release(self) -> None:
        if not self.model.claims:
            return
        ids, owner = self.rng.choice(self.model.claims[-4:])
        expected = 0
        for i in ids:
            row = self.model.rows[i]
            if row.status == "in_flight" and row.owner == owner:
                row.status, row.owner, row.lease_until = "pending", None, None
                expected += 1
        assert await self.outbox.release(ids, owner) == expected

    async def retry(self) -> None:
        if self.rng.random() < 0.5 and self.model.rows:
            ids = self.rng.sample(sorted(self.model.rows), min(3, len(self.model.rows)))
            expected = sum(self.model.make_due(self.model.rows[i], self.now) for i in ids)
            assert await self.outbox.retry(self.now, ids=ids) == expected
        else:
            destination = self.rng.choice([None, *DESTINATIONS])
            dead = [
                row
                for row in self.model.rows.values()
                if row.status == "dead" and destination in (None, row.destination)
            ]
            for row in dead:
                self.model.make_due(row, self.now)
            assert await self.outbox.retry(self.now, destination=destination) == len(dead)

    async def crash(self) -> None:
        await self.outbox.close()
        self.outbox = await self.store.open()
        if self.store.kind == "sqlite":  # one process: whatever was in flight died with it
            for row in self.model.rows.values():
                if row.status == "in_flight":
                    row.status, row.owner, row.lease_until = "pending", None, None

    async def check(self) -> None:
        rows, _ = await self.outbox.list_deliveries(limit=1000)
        assert len(rows) == len(self.model.rows)
        for got in rows:
            want = self.model.rows[got["id"]]
            assert (got["status"], got["attempts"], got["next_attempt_at"]) == (
                want.status,
                want.attempts,
                want.next_at,
            )
            assert (got["lease_owner"], got["lease_until"]) == (want.owner, want.lease_until)

    async def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.25:
            await self.ingest()
        elif roll < 0.50:
            await self.claim()
        elif roll < 0.70:
            await self.complete()
        elif roll < 0.85:
            self.now += self.rng.uniform(0, 25)
        elif roll < 0.90:
            await self.release()
        elif roll < 0.97:
            await self.retry()
        else:
            await self.crash()
        await self.check()


@pytest.mark.parametrize("seed", range(6))
async def test_random_interleavings_match_the_model(store: Store, seed: int) -> None:
    run = Run(store, await store.open(), seed)
    for _ in range(200):
        await run.step()
    stats = await run.outbox.stats(run.now)
    for destination in DESTINATIONS:
        counts = stats["destinations"].get(destination, {})
        for status in ("pending", "in_flight", "delivered", "dead"):
            want = sum(1 for r in run.model.rows.values() if r.destination == destination and r.status == status)
            assert counts.get(status, 0) == want
