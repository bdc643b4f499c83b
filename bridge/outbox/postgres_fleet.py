"""What several replicas need from the PostgreSQL outbox: lanes (leased rows naming which replica sends for each
destination, keeping its limiter's 429 state), the history a new lane holder seeds its rate limiter from, the
LISTEN side of the wake-ups (bridge/outbox/postgres_notify.py), and `skip`, which lets an ordering key go on past
a delivery ops gave up. A part of PostgresOutbox (bridge/outbox/postgres.py); the contract is
bridge/outbox/base.Outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.outbox import disabling
from bridge.outbox import postgres_queries as q
from bridge.outbox import rows as r
from bridge.outbox.base import AttemptResult, Disabled, LaneHistory, LaneState
from bridge.outbox.postgres_notify import Announcer, Listener

T = TypeVar("T")


class PostgresFleet:
    """Lanes, wake-ups and skip; mixed into PostgresOutbox, whose transactions (`_write`, `_reading`) they use."""

    _dsn: str
    acquire_timeout: float
    announcer: Announcer
    listener: Listener | None
    #: names this process in the NOTIFYs it sends
    instance: str

    if TYPE_CHECKING:

        async def _write(self, work: Callable[[Any], Awaitable[T]]) -> T: ...

        def _reading(self) -> AbstractAsyncContextManager[Any]: ...

        def _require_pool(self) -> Any: ...

    async def disable(self, destination: str, disabled: Disabled) -> bool:
        """See Outbox.disable. The replica holding the lane is told (NOTIFY on bridge_holds): it stops sending for
        the destination until it has read its state, which says disabled (a replica that missed the NOTIFY sees it
        at its next claim, refused, and lane renewal)."""

        async def work(conn: Any) -> bool:
            reason = r.clean_text(disabled.reason, strip_nul=True)
            row = await conn.fetchrow(disabling.PG_DISABLE, destination, disabled.at, reason, disabled.by)
            return row is not None

        changed = await self._write(work)
        if changed:
            self.announcer.holds([destination])
        return changed

    async def enable(self, destination: str) -> Disabled | None:
        """See Outbox.enable: the other replicas are told (NOTIFY on bridge_holds) and woken for the destination,
        whose held deliveries are due."""

        async def work(conn: Any) -> Disabled | None:
            return disabling.state(await conn.fetchrow(disabling.PG_ENABLE, destination))

        before = await self._write(work)
        if before is not None:
            self.announcer.holds([destination])
            self.announcer.work([destination])
        return before

    async def disabled(self) -> dict[str, Disabled]:
        async with self._reading() as conn:
            return disabling.states(await conn.fetch(disabling.LIST))

    async def hold_lanes(self, destinations: Sequence[str], owner: str, now: float, ttl: float) -> list[str]:
        if not destinations:
            return []
        names = sorted(set(destinations))

        async def work(conn: Any) -> list[str]:
            return [str(row[0]) for row in await conn.fetch(q.HOLD_LANES, names, owner, now + ttl, now)]

        return await self._write(work)

    async def release_lanes(self, destinations: Sequence[str], owner: str) -> None:
        if not destinations:
            return

        async def work(conn: Any) -> int:
            return len(await conn.fetch(q.RELEASE_LANES, list(destinations), owner))

        if await self._write(work):
            self.announcer.lanes()

    async def beat(self, owner: str, now: float, ttl: float) -> int:
        """See Outbox.beat: a presence row in `lanes` per live dispatcher (postgres_queries.BEAT)."""

        async def work(conn: Any) -> int:
            return int(await conn.fetchval(q.BEAT, q.PRESENCE + owner, owner, now, now + ttl))

        return 1 + await self._write(work)

    async def lane_history(self, destination: str, owner: str, since: float) -> LaneHistory:
        async with self._reading() as conn:
            sends = await conn.fetch(q.LANE_SENDS, destination, since)
            leased = await conn.fetch(q.LANE_LEASED, destination, owner + ":")
            state = await conn.fetchrow(q.LANE_STATE, destination)
            noted = await conn.fetch(q.LANE_NOTED, destination)
        return r.lane_history(sends, leased, r.lane_state(state), noted, since)

    async def note_unrecorded(self, destination: str, sends: Sequence[tuple[str, float]], before: float) -> None:
        async def work(conn: Any) -> None:
            if sends:
                await conn.execute(
                    q.NOTE_UNRECORDED, destination, [lease for lease, _ in sends], [at for _, at in sends]
                )
            await conn.execute(q.FORGET_UNRECORDED, destination, before)

        await self._write(work)

    async def save_lane_state(self, destination: str, owner: str, state: LaneState) -> bool:
        async def work(conn: Any) -> bool:
            row = await conn.fetchrow(
                q.SAVE_LANE_STATE,
                destination,
                owner,
                state.paused_until,
                state.factor,
                state.throttled_at,
                state.cooldown,
            )
            return row is not None

        return await self._write(work)

    async def watch(
        self,
        on_work: Callable[[Sequence[str] | None], None],
        on_lanes: Callable[[], None],
        on_holds: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        """LISTEN for other replicas' work, released lanes and disables/enables (bridge/outbox/postgres_notify.py)."""
        self._require_pool()
        if self.listener is not None:
            await self.listener.close()
        self.listener = Listener(
            self._dsn, self.instance, on_work, on_lanes, on_holds, connect_timeout=self.acquire_timeout
        )
        self.listener.start()

    async def skip(self, delivery_ids: Sequence[int], now: float) -> int:
        """See Outbox.skip."""
        ids = list(dict.fromkeys(delivery_ids))
        if not ids:
            return 0

        async def work(conn: Any) -> list[str]:
            rows = await conn.fetch(q.SKIP, now, ids)
            if rows:  # what was parked behind them is due now
                await conn.execute(q.UNPARK, now, [int(row[0]) for row in rows])
            return [str(row[1]) for row in rows]

        skipped = await self._write(work)
        if skipped:
            self.announcer.work(skipped)  # the next delivery of each key may be due now
        return len(skipped)


async def record_disables(conn: Any, results: Sequence[AttemptResult]) -> None:
    """Inside `complete`'s transaction: disable the destinations whose attempts say they are gone."""
    gone = [x for x in results if x.disables is not None]
    if gone:
        await conn.execute(
            disabling.PG_DISABLE_BY_DELIVERY,
            [x.delivery_id for x in gone],
            [r.finished_at(x) for x in gone],
            [r.clean_text(x.disables, strip_nul=True) for x in gone],
        )
