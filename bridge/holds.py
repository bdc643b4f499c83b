"""What the dispatcher does about disabled destinations (bridge/outbox/disabling.py): a lane whose destination is
disabled claims nothing, gives back what it had claimed and sends nothing, until the destination is enabled.

Each lane keeps what this dispatcher last learnt (`Lane.disabled`): from a 410 answer it recorded (`gone`), from
ops on this process (`hold`), and from the outbox (`refresh`, at start and at every lane renewal). A disable or
enable made on another replica is announced (PostgreSQL: NOTIFY on bridge_holds; `changed`): the lane then sends
nothing — not even what it had claimed — until the claim loop has read the destination's state (`held`: one read
per announcement, none per request). A held lane that is woken (new work) asks the outbox again before claiming.
The outbox refuses a disabled destination's claims whatever a lane believes, so a missed announcement costs at
most the deliveries already claimed, until the next lane renewal.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bridge.clock import Clock
from bridge.errors import OutboxError
from bridge.lanes import Lane
from bridge.outbox.base import AttemptResult, Delivery, Disabled, Outbox

log = logging.getLogger("bridge.dispatcher")

#: what a lane believes after another replica announced a disable or enable, until it has read the state: it is
#: held meanwhile (a disable must stop it before it sends what it had claimed)
CHECKING = Disabled(0.0, "disabled or enabled on another replica; reading its state", "ops")


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
        #: announcements heard per destination (a read that one arrived during may be stale: it is read again)
        self._heard: dict[str, int] = {}

    def hold(self, name: str, disabled: Disabled | None) -> None:
        """Hold destination `name`'s lane (`disabled`) or let it claim at once (None)."""
        lane = self.lanes.get(name)
        if lane is None:
            return
        lane.disabled = disabled
        lane.may_have_work = disabled is None
        self.wake()

    def changed(self, names: Sequence[str]) -> None:
        """Another replica disabled or enabled `names` (an announcement): hold their lanes until the claim loop
        has read their state (`held`), so a disabled destination's claimed deliveries are not sent."""
        for name in names:
            lane = self.lanes.get(name)
            if lane is None:
                continue
            self._heard[name] = self._heard.get(name, 0) + 1
            if lane.disabled is None:
                lane.disabled = CHECKING
            lane.may_have_work = True  # `held` reads the state
        self.wake()

    async def refresh(self) -> None:
        """Learn from the outbox which destinations are disabled."""
        heard = dict(self._heard)
        try:
            found = await self.outbox.disabled()
        except OutboxError as exc:  # the claims are refused all the same; the lanes learn it next time
            log.warning("cannot read which destinations are disabled: %s", exc)
            return
        for name, lane in self.lanes.items():
            if self._heard.get(name) != heard.get(name):
                continue  # announced while we read: `held` reads it again
            if (lane.disabled is None) != (name not in found) or lane.disabled is CHECKING:
                self.hold(name, found.get(name))

    async def held(self, lane: Lane) -> bool:
        """For the claim loop, about a lane believed disabled (or being checked): whether it still is (then it
        gives back what it had claimed). Woken, it asks the outbox first: it may have been enabled on another
        replica, or the announcement it is checking was an enable."""
        heard = self._heard.get(lane.name)
        if lane.may_have_work:
            found = (await self.outbox.disabled()).get(lane.name)
            if self._heard.get(lane.name) == heard:  # else announced again while we read: read again
                was, lane.disabled = lane.disabled, found
                if found is None:
                    if was is not CHECKING:
                        log.info(
                            "destination enabled again; its held deliveries are sent", extra={"destination": lane.name}
                        )
                    return False
        lane.may_have_work = False
        lane.due_since = None
        if lane.queue:
            give = list(lane.queue)
            lane.queue.clear()
            await self.give_back(lane, give)
            lane.may_have_work = False
        if self._heard.get(lane.name) != heard:
            lane.may_have_work = True
            self.wake()
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
