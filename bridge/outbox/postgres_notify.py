"""Wake-ups between replicas sharing a PostgreSQL outbox: LISTEN/NOTIFY.

Three channels:
  bridge_work   payload `<sender>\\n<destination>,<destination>,...` (or `*` for every destination): work was
                committed for these destinations (ingest, retry, replay, skip, enable);
  bridge_lanes  payload `<sender>`: a dispatcher released its lanes (at shutdown), so another may take them now;
  bridge_holds  payload `<sender>\\n<destination>,...`: ops disabled or enabled these destinations, so the
                replica holding a lane stops sending for it until it has read the destination's state again.

`Announcer` sends them after the commit, from a task of its own, coalescing: destinations named while a NOTIFY is
being sent, or within `GAP` after it, go out together in the next one, so a burst of ingests costs at most about
a hundred NOTIFYs a second, none of them inside the ingest transaction (a NOTIFY in a transaction takes a
database-wide lock at commit). A NOTIFY that fails is only
logged: the receivers' polling picks the work up a few seconds later. `close` sends what was named before it
(within a second) instead of cancelling it: a replica that stops releases its lanes and closes right after.

`Listener` holds one connection of its own (outside the pool) LISTENing on every channel and calls back on the
event loop; when the connection drops (or stops answering its check every `CHECK_SECONDS`) it reconnects with a
doubling pause (up to 30 s). Notifications a replica
sent itself are ignored (its own dispatcher was woken in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg

from bridge.errors import OutboxError

log = logging.getLogger("bridge.outbox")

WORK = "bridge_work"
LANES = "bridge_lanes"
HOLDS = "bridge_holds"
#: every destination
ALL = "*"
#: PostgreSQL refuses payloads of 8000 bytes or more
_MAX_PAYLOAD = 7000
_DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)
_RECONNECT = (0.5, 30.0)
#: how often the listening connection is checked (a connection cut without a reset never reports its end)
CHECK_SECONDS = 30.0
#: seconds between two NOTIFYs of one announcer: what is named meanwhile goes out together (a wake-up is at most
#: this much later than the commit)
GAP = 0.01


def work_payloads(sender: str, destinations: Iterable[str]) -> list[str]:
    """The bridge_work payloads naming `destinations` (several when they do not fit one)."""
    names = sorted(set(destinations))
    if ALL in names:
        return [f"{sender}\n{ALL}"]
    payloads: list[str] = []
    current: list[str] = []
    size = len(sender) + 1
    for name in names:
        if current and size + len(name) + 1 > _MAX_PAYLOAD:
            payloads.append(f"{sender}\n{','.join(current)}")
            current, size = [], len(sender) + 1
        current.append(name)
        size += len(name) + 1
    if current:
        payloads.append(f"{sender}\n{','.join(current)}")
    return payloads


def parse_work(payload: str) -> tuple[str, list[str] | None]:
    """(sender, destinations) from a bridge_work payload; None: every destination."""
    sender, _, names = payload.partition("\n")
    if names == ALL:
        return sender, None
    return sender, [name for name in names.split(",") if name]


class Announcer:
    """Sends NOTIFYs for committed work, coalesced, after the commit (see the module docstring)."""

    def __init__(self, sender: str, acquire: Callable[[], Any]) -> None:
        self.sender = sender
        #: returns the pool's acquire context manager (a pooled connection)
        self._acquire = acquire
        self._work: set[str] = set()
        self._lanes = False
        self._holds: set[str] = set()
        self._ready = asyncio.Event()
        #: set while nothing named is waiting to be sent or being sent (close waits for it)
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        #: NOTIFYs sent (for tests and metrics)
        self.sent = 0

    def work(self, destinations: Iterable[str]) -> None:
        self._work.update(destinations)
        self._kick()

    def lanes(self) -> None:
        self._lanes = True
        self._kick()

    def holds(self, destinations: Iterable[str]) -> None:
        self._holds.update(destinations)
        self._kick()

    def _kick(self) -> None:
        self._idle.clear()
        self._ready.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="outbox-announcer")

    async def _run(self) -> None:
        while True:
            if not self._ready.is_set():
                self._idle.set()
                await self._ready.wait()
            self._ready.clear()
            work, self._work = self._work, set()
            lanes, self._lanes = self._lanes, False
            holds, self._holds = self._holds, set()
            messages = [(HOLDS, p) for p in work_payloads(self.sender, holds)] if holds else []
            messages += [(WORK, p) for p in work_payloads(self.sender, work)] if work else []
            if lanes:
                messages.append((LANES, self.sender))
            if not messages:
                continue
            try:
                async with self._acquire() as conn:
                    for channel, payload in messages:
                        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
                        self.sent += 1
            except (*_DB_ERRORS, OutboxError) as exc:
                log.warning("outbox: wake-up notification not sent (replicas poll instead): %s", exc)
            await asyncio.sleep(GAP)

    async def close(self) -> None:
        """Send what is pending or being sent (within a second), then stop. (A replica that releases its lanes
        closes its outbox right after: the bridge_lanes NOTIFY must go out, not be cancelled on its way, or the
        other replicas wait for a lane renewal before taking the lanes.)"""
        task, self._task = self._task, None
        if task is None:
            return
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), 1.0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Listener:
    """One connection LISTENing on every channel, reconnecting when it drops (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        sender: str,
        on_work: Callable[[Sequence[str] | None], None],
        on_lanes: Callable[[], None],
        on_holds: Callable[[Sequence[str]], None] | None = None,
        *,
        connect_timeout: float,
    ) -> None:
        self._dsn = dsn
        self._sender = sender
        self._on_work = on_work
        self._on_lanes = on_lanes
        self._on_holds = on_holds
        self._timeout = connect_timeout
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        #: set once LISTEN is in place (tests wait for it before relying on a wake-up)
        self.listening = asyncio.Event()
        #: notifications received from other replicas
        self.received = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-listener")

    async def _run(self) -> None:
        delay = _RECONNECT[0]
        while True:
            try:
                self._conn = await asyncpg.connect(self._dsn, timeout=self._timeout)
                self._lost.clear()
                self._conn.add_termination_listener(lambda _conn: self._lost.set())
                await self._conn.add_listener(WORK, self._work)
                await self._conn.add_listener(LANES, self._lanes)
                await self._conn.add_listener(HOLDS, self._holds)
            except _DB_ERRORS as exc:
                log.warning("outbox: cannot listen for wake-ups (polling meanwhile): %s", exc)
                await self._disconnect()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECONNECT[1])
                continue
            delay = _RECONNECT[0]
            self.listening.set()
            # a connection lost while nobody listened for notifications: polling covered the gap; wake everything
            self._on_work(None)
            while not self._lost.is_set():
                try:
                    await asyncio.wait_for(self._lost.wait(), CHECK_SECONDS)
                except TimeoutError:
                    try:
                        await self._conn.fetchval("SELECT 1", timeout=self._timeout)
                    except _DB_ERRORS:
                        self._lost.set()
            self.listening.clear()
            log.warning("outbox: the wake-up connection was lost; reconnecting")
            await self._disconnect()

    def _work(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        sender, destinations = parse_work(payload)
        if sender != self._sender:
            self.received += 1
            self._on_work(destinations)

    def _lanes(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._sender:
            self.received += 1
            self._on_lanes()

    def _holds(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        sender, destinations = parse_work(payload)
        if sender != self._sender and self._on_holds is not None:
            self.received += 1
            self._on_holds(destinations if destinations is not None else [])

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*_DB_ERRORS):
                await asyncio.wait_for(conn.close(), 5)
            if not conn.is_closed():
                conn.terminate()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._disconnect()
