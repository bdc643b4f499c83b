"""A lane: one destination's share of the dispatcher — its claimed-but-unsent deliveries, its rate limiter, its
counters, and what the dispatcher knows about its due work, from which `health` tells whether it is moving.

A lane sends only while this dispatcher holds its lease (`held_until`, kept by bridge/fleet.py) for longer than a
request takes (`sendable`): with several replicas, one of them sends for each destination.

A lane is *paused* while its rate limiter holds every request back (a 429's Retry-After, capped by
`dispatcher.retry.max_retry_after`, or a full rate-limit window). It is *stalled* when it is not paused, has work
due, and has made no attempt for longer than its lease: something that should never happen, and that `/readyz`
and `/ops/outbox` report by name instead of leaving it to be noticed as missing revenue. A *disabled* lane (its
destination answered 410 Gone, or ops disabled it: `disabled`) holds its deliveries on purpose: it is never
stalled, and `/ops/outbox` shows it as disabled from the outbox's state.

Pure state and arithmetic on times passed in; the dispatcher does the claiming, sending and waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bridge.config import DispatcherSettings
from bridge.destinations.base import Destination
from bridge.outbox.base import Delivery, Disabled
from bridge.ratelimit import RateLimiter

log = logging.getLogger("bridge.dispatcher")

#: a destination's deliveries are leased for at least this many times its request timeout: one request, the
#: time spent behind another one in the lane's queue, and recording the result
LEASE_PER_TIMEOUT = 3.0


def lease_for(destination: Destination, lease_seconds: float) -> float:
    """How long this destination's claims are held: `dispatcher.lease_seconds`, stretched when the destination's
    timeout would not fit (a claim that ran out mid-request would be taken again while still being sent)."""
    return max(lease_seconds, LEASE_PER_TIMEOUT * destination.settings.timeout_seconds)


@dataclass
class LaneStats:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    lost_leases: int = 0
    latency_ms_total: float = 0.0
    requests: int = 0
    last_success_at: float | None = None
    last_failure_at: float | None = None
    #: when the last attempt (of any verdict) was decided
    last_attempt_at: float | None = None
    #: worker tasks that ended unexpectedly and were started again
    restarts: int = 0
    #: attempts that ended in an unexpected exception (a bug); recorded as retries with the exception as reason
    internal_errors: int = 0
    #: attempt results that could not be recorded (storage failed); their leases run out and they are sent again
    unrecorded: int = 0
    #: claimed deliveries given back unsent: their lease would have run out mid-request, or the lane paused
    released: int = 0


@dataclass(frozen=True, slots=True)
class LaneHealth:
    """Whether a lane is moving, as `/ops/outbox` and `/readyz` report it."""

    #: the lane sends nothing before this (a 429 pause or a full rate-limit window); None: it may send now
    paused_until: float | None
    #: work is due, the lane is not paused, and no attempt was made for longer than the lease
    stalled: bool
    #: since when the lane has had work due that it could send (None: nothing due that we know of)
    due_since: float | None
    #: seconds since the lane last made progress (an attempt, or the end of a pause) while work was due
    idle_seconds: float | None
    #: worker tasks restarted after ending unexpectedly
    restarts: int
    last_attempt_at: float | None
    #: this dispatcher holds the lane's lease (another replica sends for the destination otherwise)
    held: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: requests a worker may have out unrecorded: the one it sends, and up to three before it still being recorded.
#: A recording is a group commit (an fsync, milliseconds) while a request to a near destination takes a fraction
#: of that: with room for only one behind each worker, every worker waited for every commit and a lane went in
#: lock-step with the outbox (measured: 20k waits in a 20k drain, 10–37 % fewer deliveries/s than with three)
OUTSTANDING_PER_WORKER = 4


@dataclass
class Lane:
    destination: Destination
    limiter: RateLimiter
    #: how long this lane's claims are held (`lease_for`)
    lease_seconds: float
    queue: deque[Delivery] = field(default_factory=deque)
    sending: int = 0
    #: deliveries sent whose outcome the outbox has not recorded yet (still leased to us)
    recording: int = 0
    #: requests started whose attempts the outbox has not recorded yet (sending or recording): never more than
    #: `max_outstanding`, so a process that dies leaves at most that many requests out unrecorded (fleet.py)
    outstanding: int = 0
    #: set whenever a recording ends (a worker waiting for the outbox to catch up waits for it)
    recorded: asyncio.Event = field(default_factory=asyncio.Event)
    #: the most one claim asks for (`dispatcher.claim_batch`)
    claim_batch: int = 100
    #: False after a claim came back short: nothing more is due until woken or `next_due_at` passes
    may_have_work: bool = True
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stats: LaneStats = field(default_factory=LaneStats)
    #: the earliest time the outbox said something of this lane falls due (None: nothing pending)
    next_due_at: float | None = None
    #: when the outbox was last asked for this lane's due work
    checked_at: float = float("-inf")
    #: since when the lane has had due work (cleared when a claim finds nothing and nothing is queued or sending)
    due_since: float | None = None
    #: when the latest rate-limit wait seen on this lane ends (or ended)
    unblocked_at: float = float("-inf")
    #: until when this dispatcher holds the lane's lease (bridge/fleet.py); -inf: another one sends for it
    held_until: float = float("-inf")
    #: the last renewal granted the lane to this dispatcher, whose limiter was seeded from the outbox's history
    #: when it took the lane (False: another dispatcher holds it)
    seeded: bool = False
    #: the destination is disabled (as this dispatcher last learnt from the outbox, a 410, or ops): nothing is
    #: claimed or sent for it
    disabled: Disabled | None = None
    #: held, but being handed to another dispatcher to balance the lanes (bridge/fleet.py): sends nothing more
    yielding: bool = False

    @property
    def capacity(self) -> int:
        """How many deliveries this lane holds (queued or being sent): every worker busy with a full batch, and
        a full claim on top, so the workers still have work while the next claim waits for its commit."""
        return self.destination.settings.concurrency * self.destination.max_batch + self.claim_batch

    @property
    def max_outstanding(self) -> int:
        """The most requests out without their attempts recorded: per worker, one being sent and up to three
        being recorded. A lane's next holder counts up to this many of a dead holder's leases as sent (fleet.py)."""
        return OUTSTANDING_PER_WORKER * self.destination.settings.concurrency

    @property
    def room(self) -> int:
        """How many more deliveries a claim may take now."""
        return self.capacity - len(self.queue) - self.sending

    def wants_claim(self) -> bool:
        """Enough room for a claim worth its commit: half a full claim."""
        return self.room >= max(1, min(self.claim_batch, self.capacity) // 2)

    @property
    def name(self) -> str:
        return self.destination.name

    def wait(self, now: float) -> float:
        """Seconds the rate limiter holds requests back from `now` (0: send now); remembers when that ends."""
        wait = self.limiter.delay(now)
        if wait > 0:
            self.unblocked_at = max(self.unblocked_at, now + wait)
        return wait

    def sendable(self, now: float) -> bool:
        """Whether a request started now ends (timeout included) while this dispatcher still holds the lane."""
        return not self.yielding and self.held_until > now + self.destination.settings.timeout_seconds

    @property
    def load(self) -> int:
        """Deliveries claimed and not yet answered: queued or being sent."""
        return len(self.queue) + self.sending

    def has_work(self) -> bool:
        return bool(self.queue) or self.sending > 0 or self.recording > 0 or self.due_since is not None

    def saw_work(self, now: float) -> None:
        if self.due_since is None:
            self.due_since = now

    def health(self, now: float, *, claim_stuck: bool = False) -> LaneHealth:
        """`claim_stuck`: the claim loop has been inside one round for longer than a lease, so no lane gets work."""
        if not self.seeded:  # another replica sends for this destination: nothing here to be paused or stalled
            return LaneHealth(None, False, None, None, self.stats.restarts, self.stats.last_attempt_at, held=False)
        if self.disabled is not None:  # held on purpose, not stuck
            return LaneHealth(None, False, None, None, self.stats.restarts, self.stats.last_attempt_at)
        wait = self.wait(now)
        paused_until = now + wait if wait > 0 else None
        due_since = (self.due_since if self.due_since is not None else now) if self.has_work() else None
        idle: float | None = None
        stalled = False
        if paused_until is None:
            if due_since is not None:
                progress = max(due_since, self.stats.last_attempt_at or due_since, self.unblocked_at)
                idle = max(now - progress, 0.0)
                stalled = idle > self.lease_seconds
            stalled = stalled or claim_stuck
        return LaneHealth(
            paused_until=paused_until,
            stalled=stalled,
            due_since=due_since,
            idle_seconds=idle,
            restarts=self.stats.restarts,
            last_attempt_at=self.stats.last_attempt_at,
        )


def build_lanes(destinations: Mapping[str, Destination], settings: DispatcherSettings) -> dict[str, Lane]:
    """One lane per destination: its rate limiter and its claims' lease (stretched, with a warning, where the
    destination's timeout would not fit `dispatcher.lease_seconds`)."""
    lanes: dict[str, Lane] = {}
    for name, dest in destinations.items():
        limiter = RateLimiter(dest.rate_limits, max_pause=settings.retry.max_retry_after)
        lease = lease_for(dest, settings.lease_seconds)
        if lease > settings.lease_seconds:
            log.warning(
                "lease stretched to fit the destination's timeout",
                extra={
                    "destination": name,
                    "timeout_seconds": dest.settings.timeout_seconds,
                    "lease_seconds": settings.lease_seconds,
                    "leased_for": lease,
                },
            )
        lanes[name] = Lane(dest, limiter, lease, claim_batch=settings.claim_batch)
    return lanes
