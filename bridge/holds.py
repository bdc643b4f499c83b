"""What the dispatcher does about disabled destinations (bridge/outbox/disabling.py): a lane whose destination is
disabled claims nothing, gives back what it had claimed and sends nothing, until the destination is enabled.

Each lane keeps what this dispatcher last learnt (`Lane.disabled`): from a 410 answer it recorded (`gone`), from
ops on this process (`hold`), and from the outbox (`refresh`, at start and at every lane renewal, so a change
made on another replica is seen within a renewal). A held lane that is woken (new work, or an enable announced by
another replica over NOTIFY) asks the outbox again before claiming (`held`). The outbox refuses a disabled
destination's claims whatever a lane believes, so a stale belief costs at most the deliveries already claimed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bridge.clock import Clock
from bridge.errors import OutboxError
from bridge.lanes import Lane
from bridge.outbox.base import AttemptResult, Delivery, Disabled, Outbox

log = logging.getLogger("bridge.dispatcher")


class Holds:
    def __init__(
        self,
        outbox: Outbox,
        lanes: Mapping[str, Lane],
        clock: Clock,
        wake: Callable[[], None],
        give_back: Callable[[Lane, Sequence[Delivery]], Awaitable[None]],
    ) -> None:
        self.outbox = outbox
        self.lanes = lanes
        self.clock = clock
        self.wake = wake
        self.give_back = give_back

    def hold(self, name: str, disabled: Disabled | None) -> None:
        """Hold destination `name`'s lane (`disabled`) or let it claim at once (None)."""
        lane = self.lanes.get(name)
        if lane is None:
            return
        lane.disabled = disabled
        lane.may_have_work = disabled is None
        self.wake()

    async def refresh(self) -> None:
        """Learn from the outbox which destinations are disabled."""
        try:
            found = await self.outbox.disabled()
        except OutboxError as exc:  # the claims are refused all the same; the lanes learn it next time
            log.warning("cannot read which destinations are disabled: %s", exc)
            return
        for name, lane in self.lanes.items():
            if (lane.disabled is None) != (name not in found):
                self.hold(name, found.get(name))

    async def held(self, lane: Lane) -> bool:
        """For the claim loop, about a lane believed disabled: whether it still is (then it gives back what it
        had claimed). Woken, it asks the outbox first: it may have been enabled on another replica."""
        if lane.may_have_work:
            lane.disabled = (await self.outbox.disabled()).get(lane.name)
            if lane.disabled is None:
                log.info("destination enabled again; its held deliveries are sent", extra={"destination": lane.name})
                return False
        lane.may_have_work = False
        lane.due_since = None
        if lane.queue:
            give = list(lane.queue)
            lane.queue.clear()
            await self.give_back(lane, give)
            lane.may_have_work = False
        return True

    def gone(self, lane: Lane, results: Sequence[AttemptResult]) -> None:
        """After recording `results`: if one says the destination is gone (410), the outbox disabled it; stop
        sending for it here too."""
        reason = next((r.disables for r in results if r.disables is not None), None)
        if reason is None or lane.disabled is not None:
            return
        log.warning(
            "destination disabled: it answered 410 Gone; its deliveries are held until it is enabled",
            extra={"destination": lane.name, "reason": reason, "by": "destination"},
        )
        self.hold(lane.name, Disabled(self.clock.now(), reason, "destination"))
