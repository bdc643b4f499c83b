"""Which lanes this dispatcher sends for: lane leases held through the outbox, so a destination's documented
limits hold for the whole fleet (docs/adr/0008-fleet-lanes-ordering.md).

A lane's sending (its claims and its rate limiter) belongs to one dispatcher at a time: the holder of the lane's
lease in the outbox (`Outbox.hold_lanes`). `LaneKeeper.hold` takes or renews its lanes' leases (up to its share: see
"Lane balance" below) for `ttl` seconds; the claim loop calls it every third of that (`renew_due`). When this
dispatcher takes a lane it did not hold, it first seeds the lane's limiter from `Outbox.lane_history`: the requests
of the current windows as recorded in the attempts, the deliveries still leased by someone else (their requests may
have gone out unrecorded: at most `Lane.max_outstanding` of them, since no holder has more out unrecorded, each
counted as answered now or when its lease ran out, whichever is earlier), the requests earlier holders counted that
way, and the 429 pause its predecessor stored. It notes the unrecorded requests it counts in the outbox
(`Outbox.note_unrecorded`) before it claims: a restart puts those deliveries back to pending and a lease runs out,
but the destination's windows still hold the requests, so a chain of quick restarts or take-overs must not forget
them. Only then does the lane claim. So a restart or a take-over never starts from empty windows.

A lane is sendable while its lease outlasts a request (`Lane.sendable`): a dispatcher whose renewals fail (the
database is unreachable) stops starting requests before its lease can run out, and another takes the lane only
after it has. With SQLite every lane is always granted (one process per file); the same code runs.

Lane balance: at each renewal a dispatcher says it is alive (`Outbox.beat`, which counts the live ones) and holds
at most its share, ceil(lanes / live dispatchers). Under its share it asks for every lane (taking free ones);
at its share it renews only its own; granted more than its share, it gives the new ones back before sending for
them. Over its share (another dispatcher started) it marks the surplus *yielding*: not sendable, its queue given
back, and released (`hand_over`, every claim round) only once its requests are answered and recorded — so a lane
never has two senders, and the next holder seeds its windows from the recorded attempts as on any take-over.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping

from bridge.clock import Clock
from bridge.errors import OutboxError
from bridge.lanes import Lane
from bridge.outbox.base import LaneState, Outbox

log = logging.getLogger("bridge.dispatcher")

#: the lease is renewed after this fraction of it, so two renewals can fail before it runs out
RENEW_FRACTION = 1 / 3
#: after a failed renewal, try again this soon (clock seconds)
RETRY_SECONDS = 1.0


def share(lanes: int, dispatchers: int) -> int:
    """The most lanes one of `dispatchers` live dispatchers holds: an even split, rounded up."""
    return max(math.ceil(lanes / max(dispatchers, 1)), 1 if lanes else 0)


def lane_ttl(lease_seconds: float, lanes: Mapping[str, Lane]) -> float:
    """How long a lane lease lasts: `dispatcher.lane_lease_seconds`, stretched to three request timeouts of the
    slowest destination (a lane stays sendable for two of them after a renewal)."""
    slowest = max((lane.destination.settings.timeout_seconds for lane in lanes.values()), default=0.0)
    return max(lease_seconds, 3 * slowest)


class LaneKeeper:
    def __init__(self, outbox: Outbox, lanes: Mapping[str, Lane], owner: str, clock: Clock, ttl: float) -> None:
        self.outbox = outbox
        self.lanes = lanes
        self.owner = owner
        self.clock = clock
        self.ttl = ttl
        #: when the leases should next be renewed (clock time)
        self.renew_at = float("-inf")
        self._saves: set[asyncio.Task[None]] = set()
        #: lanes taken over from another holder (or a previous run) and seeded, for tests and logs
        self.taken = 0
        #: the most lanes this dispatcher holds: its share of them among the live dispatchers
        self.share = len(lanes)

    def renew_due(self, now: float) -> bool:
        return now >= self.renew_at

    def soon(self) -> None:
        """Renew at the next round (another dispatcher released lanes, or the clock jumped)."""
        self.renew_at = float("-inf")

    async def hold(self) -> list[str]:
        """Say this dispatcher is alive, take or renew its share of the lanes' leases (`share`), seed the limiter
        of each lane newly held, and give back what is over the share (`_balance`). Returns the lanes that became
        held. Never raises OutboxError: a failed renewal is logged and tried again shortly."""
        now = self.clock.now()
        try:
            self.share = share(len(self.lanes), await self.outbox.beat(self.owner, now, self.ttl))
            mine = [name for name, lane in self.lanes.items() if lane.seeded]
            ask = list(self.lanes) if len(mine) < self.share else mine  # at its share: asks for no free lane
            held = set(await self.outbox.hold_lanes(ask, self.owner, now, self.ttl))
        except OutboxError as exc:
            log.error("lane leases not renewed: %s; retrying", exc)
            self.renew_at = now + RETRY_SECONDS
            return []
        self.renew_at = now + self.ttl * RENEW_FRACTION
        taken: list[str] = []
        surplus: list[str] = []
        for name, lane in self.lanes.items():
            if name not in held:
                if lane.held_until > now:
                    log.warning("lane lease lost to another dispatcher", extra={"destination": name})
                lane.held_until = float("-inf")
                lane.seeded = lane.yielding = False
                continue
            if not lane.seeded:
                if len(mine) + len(taken) >= self.share:  # granted over the share: back at once, never sent for
                    surplus.append(name)
                    continue
                try:
                    await self._seed(lane, now)
                except OutboxError as exc:
                    log.error("lane not taken: its history could not be read: %s", exc, extra={"destination": name})
                    self.renew_at = now + RETRY_SECONDS
                    continue
                taken.append(name)
            lane.held_until = now + self.ttl
        await self._give_up(surplus)
        self._balance()
        return taken

    def _balance(self) -> None:
        """Mark the lanes over this dispatcher's share as yielding (the least busy first): they send nothing more,
        and `hand_over` releases each once its requests are answered and recorded. Fewer replicas than when they
        were marked: they are kept after all."""
        held = [lane for lane in self.lanes.values() if lane.seeded]
        over = len(held) - self.share
        yielding = [lane for lane in held if lane.yielding]
        for lane in yielding[max(over, 0) :]:
            lane.yielding = False
        staying = sorted((lane for lane in held if not lane.yielding), key=lambda x: (x.load, x.name))
        for lane in staying[: max(over - len(yielding), 0)]:
            lane.yielding = True
            log.info("lane handed over to balance the replicas", extra={"destination": lane.name})

    async def hand_over(self) -> None:
        """Release the yielding lanes that have nothing queued, in flight or being recorded, so a dispatcher under
        its share takes them at once (PostgreSQL: NOTIFY), seeding its limiter from what was recorded."""
        done = [name for name, lane in self.lanes.items() if lane.yielding and lane.load == 0 and not lane.recording]
        if done:
            await self._give_up(done)

    async def _give_up(self, names: list[str]) -> None:
        if not names:
            return
        if self._saves:  # a 429 pause stored first, so the next holder keeps it
            await asyncio.gather(*self._saves, return_exceptions=True)
        for name in names:
            lane = self.lanes[name]
            lane.held_until = float("-inf")
            lane.seeded = lane.yielding = False
        try:
            await self.outbox.release_lanes(names, self.owner)
        except OutboxError as exc:
            log.warning("lane leases not released (they run out instead): %s", exc)

    async def _seed(self, lane: Lane, now: float) -> None:
        limits = lane.limiter.windows
        longest = max((w.limit.per_seconds for w in limits), default=0.0)
        since = now - longest - lane.lease_seconds
        history = await self.outbox.lane_history(lane.name, self.owner, since)
        cap = lane.max_outstanding  # the most requests a holder has out unrecorded
        unrecorded = [(lease, min(until, now)) for lease, until in history.unrecorded][-cap:]
        # noted before the lane sends: the next holder may find these deliveries pending again (a restart resets
        # them) or their leases gone, yet the destination still counts the requests in its windows
        await self.outbox.note_unrecorded(lane.name, unrecorded, since)
        lane.limiter.seed([answered for _, answered in history.sends])
        lane.limiter.seed(history.presumed)
        lane.limiter.seed([at for _, at in unrecorded])
        state = history.state
        lane.limiter.restore(state.paused_until, state.factor, state.throttled_at, state.cooldown)
        lane.seeded = True
        self.taken += 1
        log.info(
            "lane taken",
            extra={
                "destination": lane.name,
                "recorded_requests": len(history.sends),
                "unrecorded_requests": len(unrecorded),
                "presumed_requests": len(history.presumed),
                "paused_until": state.paused_until or None,
            },
        )

    def save(self, lane: Lane) -> None:
        """Store the lane's limiter state (after a 429), so its next holder keeps the pause."""
        paused_until, factor, throttled_at, cooldown = lane.limiter.state()
        state = LaneState(paused_until=paused_until, factor=factor, throttled_at=throttled_at, cooldown=cooldown)
        task = asyncio.create_task(self._save(lane.name, state))
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)

    async def _save(self, name: str, state: LaneState) -> None:
        try:
            await self.outbox.save_lane_state(name, self.owner, state)
        except OutboxError as exc:
            log.warning("lane state not stored: %s", exc, extra={"destination": name})

    async def release(self) -> None:
        """Give every lease back (at shutdown, after the lanes' work was finished or given back)."""
        if self._saves:
            await asyncio.gather(*self._saves, return_exceptions=True)
        for lane in self.lanes.values():
            lane.held_until = float("-inf")
        try:  # gone first, so whoever the release wakes counts one dispatcher fewer and takes every lane
            await self.outbox.beat(self.owner, self.clock.now(), 0.0)
        except OutboxError as exc:
            log.warning("not said to be gone (it runs out instead): %s", exc)
        try:
            await self.outbox.release_lanes(list(self.lanes), self.owner)
        except OutboxError as exc:
            log.warning("lane leases not released (they run out instead): %s", exc)
