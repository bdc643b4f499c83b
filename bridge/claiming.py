"""Claiming: how the dispatcher's claim loop (bridge/dispatcher.py) tops its lanes up from the outbox, and gives
claims back unsent.

A round asks about every lane at once (their claims share one group commit). A lane claims only while this
dispatcher holds it (bridge/fleet.py), it is not disabled (bridge/holds.py), and its rate limiter would let it send
within `HOLD_BACK_SECONDS`; a paused lane claims nothing and gives back what would outlive its lease. A lane asks
the outbox only when it may have work (woken, a poll interval passed, or its next due time came); a claim that
comes back short asks when the next delivery falls due, and the round returns how long the loop may sleep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from bridge.clock import Clock
from bridge.errors import OutboxError
from bridge.holds import Holds
from bridge.lanes import Lane
from bridge.outbox.base import Delivery, Outbox

log = logging.getLogger("bridge.dispatcher")

#: a lane whose limiter holds requests back longer than this is not claimed for, and gives back what it holds
#: that would outlive its lease
HOLD_BACK_SECONDS = 1.0
#: how soon to look again when the outbox reports work due that a claim just did not get (a concurrent writer)
RECHECK_SECONDS = 0.05


class Claimer:
    def __init__(
        self,
        outbox: Outbox,
        lanes: Mapping[str, Lane],
        owner: str,
        clock: Clock,
        holds: Holds,
        *,
        claim_batch: int,
        poll_seconds: float,
    ) -> None:
        self.outbox = outbox
        self.lanes = lanes
        self.owner = owner
        self.clock = clock
        self.holds = holds
        self.claim_batch = claim_batch
        #: longest a lane goes without asking the outbox (`dispatcher.poll_seconds`)
        self.poll_seconds = poll_seconds
        #: claims made (each gets a fresh token)
        self.claims = 0
        #: when the round in progress started (None: none is)
        self.round_started: float | None = None

    async def fill(self) -> float:
        """Top every lane up from the outbox. Returns how long the loop may sleep before looking again: until
        the earliest moment a lane that is not paused has work due, or a pause ends."""
        now = self.clock.now()
        self.round_started = now
        try:
            # all lanes at once: their claims are written in one group commit instead of one commit after another
            # (with five destinations, the last lane's claim used to wait for four commits)
            fills = [
                asyncio.create_task(self.fill_lane(name, lane, now), name=f"dispatcher-claim-{name}")
                for name, lane in self.lanes.items()
            ]
            outcomes = await asyncio.gather(*fills, return_exceptions=True)
            failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
            if failed:
                raise failed[0]
            return max(min([self.poll_seconds, *(o for o in outcomes if not isinstance(o, BaseException))]), 0.0)
        finally:
            self.round_started = None

    async def fill_lane(self, name: str, lane: Lane, now: float) -> float:
        if not lane.sendable(now):  # another dispatcher holds the lane (or our lease is lapsing): hand back
            if lane.queue:
                give = list(lane.queue)
                lane.queue.clear()
                await self.give_back(lane, give)
            return self.poll_seconds
        if lane.disabled is not None and await self.holds.held(lane):
            return self.poll_seconds
        wait = lane.wait(now)
        if wait > HOLD_BACK_SECONDS:
            # paused or rate-limited for a while: claim nothing, and give back what would outlive its lease
            await self.hold_back(lane, now + wait)
            return wait
        if now - lane.checked_at >= self.poll_seconds or (lane.next_due_at is not None and lane.next_due_at <= now):
            lane.may_have_work = True
        room = lane.room
        if room <= 0:
            return self.poll_seconds  # a worker that finishes a batch wakes the loop (Dispatcher._lane_low)
        if not lane.may_have_work:
            return self.poll_seconds if lane.next_due_at is None else lane.next_due_at - now
        want = min(room, self.claim_batch)
        # a fresh token per claim: a completion for a lease we lost and took back later is still fenced off
        self.claims += 1
        token = f"{self.owner}:{self.claims}"
        claimed = await self.outbox.claim(name, want, now, lane.lease_seconds, token)
        lane.checked_at = now
        if claimed:
            lane.queue.extend(claimed)
            lane.ready.set()
            lane.saw_work(now)
        if len(claimed) >= want:
            lane.next_due_at = now
            return 0.0
        lane.may_have_work = False
        if lane.queue or lane.sending:
            return self.poll_seconds  # busy: its workers wake the loop as they finish (Dispatcher._lane_low)
        due = await self.outbox.next_due_at(name)
        lane.next_due_at = due
        if not claimed and (due is None or due > now):
            lane.due_since = None
        if due is None:
            return self.poll_seconds
        if due <= now:
            # due, yet not claimed: written after our claim, or locked by another claimer; look again soon
            return RECHECK_SECONDS
        return due - now

    async def hold_back(self, lane: Lane, until: float) -> None:
        """Give back queued deliveries whose lease would run out before the lane may send them."""
        timeout = lane.destination.settings.timeout_seconds
        keep = [d for d in lane.queue if d.lease_until > until + timeout]
        if len(keep) == len(lane.queue):
            return
        give = [d for d in lane.queue if d.lease_until <= until + timeout]
        lane.queue.clear()
        lane.queue.extend(keep)
        log.info(
            "claims given back while the destination is held back",
            extra={"destination": lane.name, "delivery_ids": [d.id for d in give], "until": until},
        )
        await self.give_back(lane, give)

    async def give_back(self, lane: Lane, deliveries: Sequence[Delivery]) -> None:
        lane.may_have_work = True
        await self.release(deliveries)
        lane.stats.released += len(deliveries)

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give leases back unsent (no attempt counted); where that fails they simply run out."""
        by_token: dict[str, list[int]] = {}
        for delivery in deliveries:
            by_token.setdefault(delivery.lease_owner, []).append(delivery.id)
        for token, ids in by_token.items():
            try:
                await self.outbox.release(ids, token)
            except OutboxError as exc:
                log.warning(
                    "giving claims back failed; their leases run out instead",
                    extra={"delivery_ids": ids, "error": str(exc)},
                )
