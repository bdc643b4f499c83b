"""The delivery loop: claim due deliveries, render them for their destination, send, record, reschedule.

One `Lane` (bridge/lanes.py) per destination holds its claimed-but-unsent deliveries, its concurrency limit and
its rate limiter. A single claim loop tops lanes up from the outbox (bridge/claiming.py) when they have room,
sleeping until the earliest time a lane that may send has work due, or until `wake()` (called by ingest after a
commit, and by ops retries). A paused lane (429, full rate-limit window) is not claimed for and does not wake
the loop before its pause ends, so an idle or paused lane costs no CPU. Each lane runs `concurrency` workers that
take deliveries (up to the destination's batch size), wait for the rate limiter, send over the one shared aiohttp
session (bridge/sending.py) and complete the attempt in the outbox, fenced by the token of the claim that leased it.

Nothing that goes wrong with one batch stops a lane: every exception while rendering, sending or recording
becomes an attempt with its reason (or, when recording itself fails, a lease that runs out so the work is taken
again), and a claim loop or worker task that ends anyway is started again and counted (bridge/supervision.py;
`LaneStats.restarts`, `Dispatcher.claim_restarts`). `lane_health` reports paused and stalled lanes.

Lanes are leased through the outbox (bridge/fleet.py): a lane claims and sends only while this dispatcher holds
its lease, so with several replicas each destination is sent for by one of them and its documented limits hold
for the fleet; the claim loop renews the leases, and seeds a lane's limiter from the outbox when it takes one.
Work committed by another process wakes the loop through `Outbox.watch` (PostgreSQL: LISTEN/NOTIFY); polling every
`dispatcher.poll_seconds` stays the fallback.

A disabled destination (it answered 410 Gone, or ops disabled it; bridge/outbox/disabling.py) holds its deliveries:
the outbox refuses its claims, and its lane gives back what it had claimed and sends nothing until it is enabled
(`hold`, or the outbox says so when the lane is woken or the lanes are renewed).

Time comes from the injected clock. With a ManualClock a test drives the loop by moving time and calling
`wake()`; nothing here sleeps on a deadline computed from that clock without being woken again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence

import aiohttp

from bridge import logs
from bridge.claiming import HOLD_BACK_SECONDS, Claimer
from bridge.clock import Clock
from bridge.config import DispatcherSettings
from bridge.destinations.base import Destination, Outcome, Verdict
from bridge.errors import OutboxError
from bridge.fleet import LaneKeeper, lane_ttl
from bridge.holds import Holds
from bridge.lanes import Lane, LaneHealth, LaneStats, build_lanes
from bridge.outbox.base import AttemptResult, Delivery, Disabled, Outbox
from bridge.sending import Sender, new_session
from bridge.supervision import supervise

log = logging.getLogger("bridge.dispatcher")

#: longest the claim loop sleeps without asking the outbox about a lane, by default (`dispatcher.poll_seconds`:
#: it catches work another process added whose wake-up was missed)
MAX_IDLE_SECONDS = 5.0
__all__ = ["MAX_IDLE_SECONDS", "Dispatcher", "Lane", "LaneHealth", "LaneStats", "new_owner", "new_session"]


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Dispatcher:
    def __init__(
        self,
        outbox: Outbox,
        destinations: Mapping[str, Destination],
        session: aiohttp.ClientSession,
        clock: Clock,
        settings: DispatcherSettings,
        *,
        rng: random.Random | None = None,
        owner: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.session = session
        self.clock = clock
        self.settings = settings
        self.rng = rng or random.Random()
        self.owner = owner or new_owner()
        self.lanes: dict[str, Lane] = build_lanes(destinations, settings)
        self.sender = Sender(session, clock, settings.retry, self.rng, on_throttled=self._throttled)
        ttl = lane_ttl(settings.lane_lease_seconds, self.lanes)
        self.keeper = LaneKeeper(outbox, self.lanes, self.owner, clock, ttl)
        self.holds = Holds(outbox, self.lanes, clock, lambda: self._wake.set(), self._give_back)
        self.claimer = Claimer(
            outbox,
            self.lanes,
            self.owner,
            clock,
            self.holds,
            claim_batch=settings.claim_batch,
            poll_seconds=settings.poll_seconds,
        )
        #: claim rounds started by the poll timeout rather than a wake-up (tests check that wake-ups arrive)
        self.polls = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        #: per lane: results sent and not yet handed to the outbox (one entry per request), and the task that
        #: records them (_deliver)
        self._unrecorded: dict[str, list[tuple[list[Delivery], list[AttemptResult]]]] = {}
        self._recorders: dict[str, asyncio.Task[None]] = {}
        #: rounds of the claim loop (each asks the outbox about the lanes that may have work)
        self.claim_rounds = 0
        #: times the claim loop ended unexpectedly and was started again
        self.claim_restarts = 0
        #: claim rounds that failed on the outbox (logged; the loop tries again a second later)
        self.claim_failures = 0

    @property
    def on_request(self) -> Callable[[str, float], None] | None:
        """Called with (destination, seconds) after each destination request (the app points it at its metrics)."""
        return self.sender.on_request

    @on_request.setter
    def on_request(self, callback: Callable[[str, float], None] | None) -> None:
        self.sender.on_request = callback

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        await self.keeper.hold()  # take (and seed) the lanes before the first claim
        await self.holds.refresh()
        try:
            await self.outbox.watch(self.wake, self._lanes_released, self.holds.changed)
        except OutboxError as exc:  # polling still finds the work
            log.error("cannot watch the outbox for wake-ups; polling only: %s", exc)
        self._tasks.append(self._supervise("dispatcher-claim", self._claim_loop, None))
        for name, lane in self.lanes.items():
            for index in range(lane.destination.settings.concurrency):
                work = functools.partial(self._worker, lane)
                self._tasks.append(self._supervise(f"dispatcher-{name}-{index}", work, lane))

    async def stop(self) -> None:
        """Stop claiming; let in-flight sends finish within the grace period; give back every other lease."""
        self._stopping = True
        self._wake.set()
        for lane in self.lanes.values():
            lane.ready.set()
            lane.recorded.set()
        if self._sends:
            _, pending = await asyncio.wait(set(self._sends), timeout=self.settings.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._sends, return_exceptions=True)
        self._tasks.clear()
        for lane in self.lanes.values():
            leftovers = list(lane.queue)
            lane.queue.clear()
            await self.claimer.release(leftovers)
        await self.keeper.release()

    def _lanes_released(self) -> None:
        """Another dispatcher gave its lanes up: try to take them now."""
        self.keeper.soon()
        self._wake.set()

    def wake(self, destinations: Sequence[str] | None = None) -> None:
        """New work may be due (after an ingest commit, an ops retry, or a clock change in tests)."""
        for name in destinations if destinations is not None else self.lanes:
            lane = self.lanes.get(name)
            if lane is not None:
                lane.may_have_work = True
        self._wake.set()

    def _supervise(self, name: str, body: Callable[[], Awaitable[None]], lane: Lane | None) -> asyncio.Task[None]:
        return supervise(name, body, lambda: self._stopping, functools.partial(self._restarted, lane))

    def _restarted(self, lane: Lane | None) -> None:
        if lane is None:
            self.claim_restarts += 1
        else:
            lane.stats.restarts += 1
        self._wake.set()

    # -- claiming ------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self.claim_rounds += 1
            if self.keeper.renew_due(self.clock.now()):
                for name in await self.keeper.hold():
                    self.lanes[name].may_have_work = True
                await self.holds.refresh()  # ops (on any replica) may have disabled a destination
            await self.keeper.hand_over()  # lanes given up to balance the replicas, once their sends are done
            try:
                timeout = await self.fill()
            except OutboxError as exc:
                log.error("claim failed: %s", exc)
                self.claim_failures += 1
                timeout = 1.0
            if self._stopping:
                return
            timeout = min(timeout, max(self.keeper.renew_at - self.clock.now(), 0.0))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout / self.clock.scale)
            except TimeoutError:
                self.polls += 1

    async def fill(self) -> float:
        """Top every lane up from the outbox (bridge/claiming.py). Returns how long the loop may sleep."""
        return await self.claimer.fill()

    async def _give_back(self, lane: Lane, deliveries: Sequence[Delivery]) -> None:
        await self.claimer.give_back(lane, deliveries)

    def hold(self, name: str, disabled: Disabled | None) -> None:
        """Ops disabled (`disabled`) or enabled (None) destination `name`: hold its lane, or let it claim at once."""
        self.holds.hold(name, disabled)

    def _lane_low(self, lane: Lane) -> None:
        if lane.wants_claim():
            lane.may_have_work = True
            self._wake.set()

    def _throttled(self, lane: Lane) -> None:
        """A 429 paused `lane`: let the claim loop give back what the lane holds; store the pause for the lane's
        next holder."""
        self.keeper.save(lane)
        self._wake.set()

    # -- sending -------------------------------------------------------------------------------------

    def _take(self, lane: Lane) -> list[Delivery]:
        batch: list[Delivery] = []
        size = lane.destination.max_batch
        while lane.queue and len(batch) < size:
            batch.append(lane.queue.popleft())
        if not lane.queue:
            lane.ready.clear()
        return batch

    async def _worker(self, lane: Lane) -> None:
        logs.bind(destination=lane.destination.name)  # every line from this lane (and its sends) names it
        worker = asyncio.current_task()
        assert worker is not None
        while not self._stopping:
            if not lane.queue:
                lane.ready.clear()
                await lane.ready.wait()
                continue
            if lane.outstanding >= lane.max_outstanding:
                # the outbox records slower than the lane sends: let it catch up before sending more (a restart
                # counts at most this many requests of ours as sent unrecorded)
                lane.recorded.clear()
                await lane.recorded.wait()
                continue
            now = self.clock.now()
            if not lane.sendable(now):  # the lease is lapsing: the claim loop gives the queue back or renews
                self._wake.set()
                await asyncio.sleep(HOLD_BACK_SECONDS / self.clock.scale)
                continue
            wait = lane.wait(now)
            if wait > 0:
                await asyncio.sleep(min(wait, HOLD_BACK_SECONDS) / self.clock.scale)
                continue
            batch = self._take(lane)
            if not batch:
                continue
            ticket = lane.limiter.record()
            lane.sending += len(batch)
            lane.outstanding += 1  # until its attempts are recorded, or no request went out
            # the send runs in this task (no task of its own per request): while it is out, stop() counts the
            # worker among the sends it lets finish within the grace period, and the worker ends after it
            self._sends.add(worker)
            try:
                await self._deliver(lane, batch, ticket)
            finally:
                self._sends.discard(worker)
                lane.sending -= len(batch)
                self._lane_low(lane)

    async def _deliver(self, lane: Lane, batch: list[Delivery], ticket: int) -> None:
        """Send `batch`, then queue the outcome for the lane's recorder (_recorder), so the worker goes on to its
        next batch while the outbox commits this one (the deliveries stay leased until then; stop() waits for the
        recording like for a send). Never raises (but for cancellation): whatever goes wrong becomes an attempt
        with its reason, or — if even recording fails — leases that run out and are taken again. `ticket`: the
        rate limiter's count of this request, given back if no request goes out."""
        try:
            sent = await self._send(lane, batch, ticket)
        except BaseException:
            lane.outstanding -= 1
            raise
        finally:
            lane.limiter.cancel(ticket)
        if sent is None or not sent[1]:
            lane.outstanding -= 1
            lane.recorded.set()
            return
        lane.recording += len(sent[1])
        self._unrecorded.setdefault(lane.name, []).append(sent)
        if lane.name not in self._recorders:
            task = asyncio.create_task(self._recorder(lane), name=f"dispatcher-{lane.name}-record")
            self._recorders[lane.name] = task
            self._sends.add(task)
            task.add_done_callback(functools.partial(self._recorder_done, lane))

    async def _recorder(self, lane: Lane) -> None:
        """Record what the lane's workers sent: everything that came back while the last `complete` was under way
        goes in the next one (the outbox commits them together anyway), so a busy lane needs one task and one
        outbox call for many deliveries instead of one each. Ends when nothing is left to record."""
        while queued := self._unrecorded.pop(lane.name, None):
            deliveries = [d for sent, _ in queued for d in sent]
            results = [r for _, sent_results in queued for r in sent_results]
            try:
                await self._record(lane, deliveries, results)
            except Exception:  # a bug after the outbox answered: the attempts are recorded or their leases run out
                log.exception("recording attempts failed unexpectedly", extra={"destination": lane.name})
            finally:
                self._recorded(lane, len(results), len(queued))
        del self._recorders[lane.name]  # no await since the last look: the next send starts another recorder

    def _recorder_done(self, lane: Lane, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        if self._recorders.get(lane.name) is task:  # cancelled (stop, past its grace): the rest's leases run out
            del self._recorders[lane.name]
            left = self._unrecorded.pop(lane.name, [])
            self._recorded(lane, sum(len(results) for _, results in left), len(left))

    def _recorded(self, lane: Lane, count: int, requests: int) -> None:
        """`count` results of `requests` requests were recorded (or given up on: their leases run out)."""
        lane.outstanding -= requests
        lane.recording -= count
        lane.recorded.set()
        self._lane_low(lane)  # a recorded retry may be due before the claim loop would look again

    async def _send(
        self, lane: Lane, batch: list[Delivery], ticket: int
    ) -> tuple[list[Delivery], list[AttemptResult]] | None:
        """Send what of `batch` can still be sent under its lease: (the deliveries sent, their results), or None."""
        now = self.clock.now()
        timeout = lane.destination.settings.timeout_seconds
        fresh = [d for d in batch if d.lease_until > now + timeout]
        if len(fresh) < len(batch):
            stale = [d for d in batch if d.lease_until <= now + timeout]
            log.warning(
                "claims given back unsent: their lease would run out mid-request",
                extra={"destination": lane.name, "delivery_ids": [d.id for d in stale]},
            )
            await self._give_back(lane, stale)
            self._wake.set()
        if lane.disabled is not None:  # disabled meanwhile: hand back unsent
            await self._give_back(lane, fresh)
            fresh = []
        if not fresh:
            return None
        try:
            results = await self.sender.send(lane, fresh, ticket)
        except Exception as exc:  # a bug: say so on each delivery, keep the worker
            log.exception(
                "sending failed unexpectedly", extra={"destination": lane.name, "delivery_ids": [d.id for d in fresh]}
            )
            lane.stats.internal_errors += 1
            outcome = Outcome(Verdict.RETRY, f"internal error while sending: {type(exc).__name__}: {exc}")
            results = [self.sender.result(lane, d, outcome, now) for d in fresh]
        return fresh, results

    async def send(self, lane: Lane, batch: Sequence[Delivery]) -> list[AttemptResult]:
        """Render, send and classify one request for `batch` (bridge/sending.py), outside the rate limiter; one
        AttemptResult per delivery sent or settled. Deliveries that did not fit go back to the lane's queue."""
        return await self.sender.send(lane, batch)

    async def _record(self, lane: Lane, batch: Sequence[Delivery], results: list[AttemptResult]) -> None:
        if not results:
            return
        try:
            applied = await self.outbox.complete(results)
        except Exception as exc:  # OutboxError, or a bug: either way the attempt is not recorded
            lane.stats.unrecorded += len(results)
            leases_end = min((d.lease_until for d in batch), default=self.clock.now())
            log.error(
                "recording attempts failed: %s: %s; their leases run out and they are sent again",
                type(exc).__name__,
                exc,
                extra={
                    "destination": lane.name,
                    "delivery_ids": [r.delivery_id for r in results],
                    "leases_end": leases_end,
                },
            )
            lane.next_due_at = leases_end if lane.next_due_at is None else min(lane.next_due_at, leases_end)
            self._wake.set()
            return
        lane.stats.lost_leases += applied.count(False)
        self.holds.gone(lane, results)
        retries = [r.next_attempt_at for r, ok in zip(results, applied, strict=True) if ok and r.verdict == "retry"]
        soonest = min((t for t in retries if t is not None), default=None)
        if soonest is not None:
            lane.next_due_at = soonest if lane.next_due_at is None else min(lane.next_due_at, soonest)

    # -- reporting -----------------------------------------------------------------------------------

    def lane_stats(self) -> dict[str, LaneStats]:
        return {name: lane.stats for name, lane in self.lanes.items()}

    def lane_health(self, now: float) -> dict[str, LaneHealth]:
        """Per destination: paused until when, stalled or not, since when work is due, restarts, last attempt."""
        started = self.claimer.round_started
        stuck = started is not None and now - started > self.settings.lease_seconds
        return {name: lane.health(now, claim_stuck=stuck) for name, lane in self.lanes.items()}
