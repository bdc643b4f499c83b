"""The SQLite outbox's lanes and skip. One process owns the file, so every lane is always granted (`open` clears
the owners the dead process left); what the lanes remember still matters across restarts: the requests of the
current windows (attempts), the deliveries `open` found in flight (their requests may have gone out unrecorded)
and the limiter's 429 state. `skip` lets an ordering key go on past a delivery ops gave up. A part of SqliteOutbox
(bridge/outbox/sqlite.py); the contract is bridge.outbox.base.Outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from bridge.outbox import disabling
from bridge.outbox import rows as r
from bridge.outbox import sqlite_queries as q
from bridge.outbox.base import Disabled, LaneHistory, LaneState


class SqliteFleet:
    """Lanes and skip; mixed into SqliteOutbox, whose writer (`_submit`) and read connection (`_reading`) they use."""

    #: (lease, lease_until) of the deliveries the last open found in flight, per destination
    _recovered: dict[str, list[tuple[str, float]]]

    if TYPE_CHECKING:

        async def _submit(self, kind: str, arg: Any) -> Any: ...

        def _reading(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        @staticmethod
        async def _all(
            conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()
        ) -> list[Any]: ...

    async def disable(self, destination: str, disabled: Disabled) -> bool:
        """See Outbox.disable."""
        changed: bool = await self._submit("disable", (destination, disabled))
        return changed

    async def enable(self, destination: str) -> Disabled | None:
        """See Outbox.enable (one process owns the file: its own dispatcher is woken by the caller)."""
        before: Disabled | None = await self._submit("enable", destination)
        return before

    async def disabled(self) -> dict[str, Disabled]:
        async with self._reading() as conn:
            return disabling.states(await self._all(conn, disabling.LIST))

    async def hold_lanes(self, destinations: Sequence[str], owner: str, now: float, ttl: float) -> list[str]:
        if not destinations:
            return []
        held: list[str] = await self._submit("hold_lanes", (list(dict.fromkeys(destinations)), owner, now, now + ttl))
        return held

    async def release_lanes(self, destinations: Sequence[str], owner: str) -> None:
        if destinations:
            await self._submit("release_lanes", (list(destinations), owner))

    async def beat(self, owner: str, now: float, ttl: float) -> int:
        """One process owns the file: it is the only dispatcher, and holds every lane."""
        return 1

    async def lane_history(self, destination: str, owner: str, since: float) -> LaneHistory:
        prefix = owner + ":"
        async with self._reading() as conn:
            sends = await self._all(conn, q.LANE_SENDS, [destination, since])
            leased = await self._all(conn, q.LANE_LEASED, [destination, len(prefix), prefix])
            state = await self._all(conn, q.LANE_STATE, [destination])
            noted = await self._all(conn, q.LANE_NOTED, [destination])
        recovered = self._recovered.get(destination, [])
        return r.lane_history(sends, [*leased, *recovered], r.lane_state(state[0] if state else None), noted, since)

    async def note_unrecorded(self, destination: str, sends: Sequence[tuple[str, float]], before: float) -> None:
        await self._submit("note_unrecorded", (destination, list(sends), before))

    async def save_lane_state(self, destination: str, owner: str, state: LaneState) -> bool:
        saved: bool = await self._submit("save_lane_state", (destination, owner, state))
        return saved

    async def watch(
        self,
        on_work: Callable[[Sequence[str] | None], None],
        on_lanes: Callable[[], None],
        on_holds: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        """Nothing to do: one process owns the file, and it wakes its own dispatcher."""

    async def skip(self, delivery_ids: Sequence[int], now: float) -> int:
        """See Outbox.skip."""
        ids = list(dict.fromkeys(delivery_ids))
        if not ids:
            return 0
        skipped: int = await self._submit("skip", (ids, now))
        return skipped
