"""The delivery loop: claim due deliveries, render them for their destination, send, record, reschedule.

One `Lane` per destination holds its claimed-but-unsent deliveries, its concurrency limit and its rate
limiter. A single claim loop tops lanes up from the outbox when they have room, sleeping until the next due
delivery or until `wake()` (called by ingest after a commit, and by ops retries). Each lane runs
`concurrency` workers that take deliveries (up to the destination's batch size), wait for the rate limiter,
send over the one shared aiohttp session and complete the attempt in the outbox, fenced by our owner token.

Time comes from the injected clock. With a ManualClock a test drives the loop by moving time and calling
`wake()`; nothing here sleeps on a deadline computed from that clock without being woken again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import orjson

from bridge import logs
from bridge.clock import Clock
from bridge.config import DispatcherSettings
from bridge.destinations.base import (
    USER_AGENT,
    BatchTooLarge,
    Destination,
    HttpRequest,
    Outcome,
    Verdict,
    response_excerpt,
)
from bridge.errors import OutboxError, RenderError
from bridge.outbox.base import AttemptResult, Delivery, Outbox
from bridge.ratelimit import RateLimiter
from bridge.retry import parse_retry_after

log = logging.getLogger("bridge.dispatcher")

#: how much of a response body we read (classification and the attempt log)
MAX_RESPONSE_BYTES = 64 * 1024
#: longest the claim loop sleeps without checking the outbox (catches retries that became due)
MAX_IDLE_SECONDS = 5.0


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


@dataclass
class Lane:
    destination: Destination
    limiter: RateLimiter
    queue: deque[Delivery] = field(default_factory=deque)
    sending: int = 0
    #: False after a claim came back short: nothing more is due until woken or a timer passes
    may_have_work: bool = True
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stats: LaneStats = field(default_factory=LaneStats)

    @property
    def capacity(self) -> int:
        """How many deliveries this lane wants buffered: enough to keep every worker busy with a full batch."""
        return self.destination.settings.concurrency * self.destination.max_batch * 2


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
        self.lanes = {name: Lane(dest, RateLimiter(dest.rate_limits)) for name, dest in destinations.items()}
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self._claims = 0
        #: called with (destination, seconds) after each destination request (the app points it at its metrics)
        self.on_request: Callable[[str, float], None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._tasks.append(asyncio.create_task(self._claim_loop(), name="dispatcher-claim"))
        for name, lane in self.lanes.items():
            for index in range(lane.destination.settings.concurrency):
                self._tasks.append(asyncio.create_task(self._worker(lane), name=f"dispatcher-{name}-{index}"))

    async def stop(self) -> None:
        """Stop claiming; let in-flight sends finish within the grace period; give back every other lease."""
        self._stopping = True
        self._wake.set()
        for lane in self.lanes.values():
            lane.ready.set()
        if self._sends:
            _, pending = await asyncio.wait(set(self._sends), timeout=self.settings.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._sends, return_exceptions=True)
        self._tasks.clear()
        leftovers: dict[str, list[int]] = {}
        for lane in self.lanes.values():
            for delivery in lane.queue:
                leftovers.setdefault(delivery.lease_owner, []).append(delivery.id)
            lane.queue.clear()
        for token, ids in leftovers.items():
            with contextlib.suppress(OutboxError):
                await self.outbox.release(ids, token)

    def wake(self, destinations: Sequence[str] | None = None) -> None:
        """New work may be due (after an ingest commit, an ops retry, or a clock change in tests)."""
        for name in destinations if destinations is not None else self.lanes:
            lane = self.lanes.get(name)
            if lane is not None:
                lane.may_have_work = True
        self._wake.set()

    # -- claiming ------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                timeout = await self.fill()
            except OutboxError as exc:
                log.error("claim failed: %s", exc)
                timeout = 1.0
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout / self.clock.scale)

    async def fill(self) -> float:
        """Top every lane up from the outbox. Returns how long the loop may sleep before looking again."""
        now = self.clock.now()
        sleep = MAX_IDLE_SECONDS
        for name, lane in self.lanes.items():
            limit_wait = lane.limiter.delay(now)
            if limit_wait > 1.0:
                # rate-limited for a while: don't hold leases on work we cannot send yet
                sleep = min(sleep, limit_wait)
                continue
            room = lane.capacity - len(lane.queue) - lane.sending
            if room <= 0 or not lane.may_have_work:
                continue
            want = min(room, self.settings.claim_batch)
            # a fresh token per claim: a completion for a lease we lost and took back later is still fenced off
            self._claims += 1
            token = f"{self.owner}:{self._claims}"
            claimed = await self.outbox.claim(name, want, now, self.settings.lease_seconds, token)
            if claimed:
                lane.queue.extend(claimed)
                lane.ready.set()
            if len(claimed) < want:
                lane.may_have_work = False
            else:
                sleep = 0.0
        due = await self.outbox.next_due_at()
        if due is not None:
            if due <= now:
                self.wake()
                sleep = 0.0
            else:
                sleep = min(sleep, due - now)
        return max(sleep, 0.0)

    def _lane_low(self, lane: Lane) -> None:
        if len(lane.queue) < lane.capacity // 2:
            lane.may_have_work = True
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
        while not self._stopping:
            if not lane.queue:
                await lane.ready.wait()
                continue
            wait = lane.limiter.delay(self.clock.now())
            if wait > 0:
                await asyncio.sleep(min(wait, 1.0) / self.clock.scale)
                continue
            batch = self._take(lane)
            if not batch:
                continue
            counted_at = self.clock.now()
            lane.limiter.record(counted_at)
            lane.sending += len(batch)
            task = asyncio.create_task(self._deliver(lane, batch, counted_at))
            self._sends.add(task)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done() or self._stopping:
                    raise
            finally:
                self._sends.discard(task)
                lane.sending -= len(batch)
                self._lane_low(lane)

    async def _deliver(self, lane: Lane, batch: list[Delivery], counted_at: float) -> None:
        now = self.clock.now()
        timeout = lane.destination.settings.timeout_seconds
        fresh = [d for d in batch if d.lease_until > now + timeout]
        if len(fresh) < len(batch):
            # these leases would run out mid-request; the outbox will offer them again
            lane.may_have_work = True
        if not fresh:
            return
        results = await self.send(lane, fresh, counted_at)
        try:
            applied = await self.outbox.complete(results)
        except OutboxError as exc:
            log.error(
                "recording attempts failed: %s",
                exc,
                extra={"destination": lane.destination.name, "delivery_ids": [r.delivery_id for r in results]},
            )
            return
        lane.stats.lost_leases += applied.count(False)

    async def send(self, lane: Lane, batch: Sequence[Delivery], counted_at: float | None = None) -> list[AttemptResult]:
        """Render, send and classify one request for `batch`; one AttemptResult per delivery. `counted_at`: when
        the rate limiter counted the request (the latency it learns from is measured from there)."""
        destination = lane.destination
        started = self.clock.now()
        status: int | None = None
        excerpt: str | None = None
        latency: float | None = None
        events = [_decode(d) for d in batch]
        try:
            try:
                request = destination.render(events)
            except BatchTooLarge as too_large:
                if too_large.fits < 1:
                    raise
                # send what fits now; the rest goes back to the front of the lane for the next request
                lane.queue.extendleft(reversed(batch[too_large.fits :]))
                lane.ready.set()
                batch = batch[: too_large.fits]
                request = destination.render(events[: too_large.fits])
        except RenderError as exc:
            outcome = Outcome(Verdict.DEAD, f"cannot render: {exc}")
        else:
            t0 = time.perf_counter()
            outcome, status, excerpt = await self._http(destination, request)
            latency = (time.perf_counter() - t0) * 1000
        now = self.clock.now()
        lane.limiter.observe(now - (counted_at if counted_at is not None else started))
        stats = lane.stats
        stats.requests += 1
        if latency is not None:
            stats.latency_ms_total += latency
            if self.on_request is not None:
                self.on_request(destination.name, latency / 1000)
        if outcome.verdict is Verdict.DELIVERED:
            lane.limiter.succeeded()
            stats.last_success_at = now
        else:
            stats.last_failure_at = now
            if status == 429:
                lane.limiter.throttled(now, outcome.retry_after)
        results = []
        for delivery in batch:
            verdict: Literal["delivered", "retry", "dead"] = outcome.verdict.value
            next_at: float | None = None
            error = None if outcome.verdict is Verdict.DELIVERED else outcome.reason
            if outcome.verdict is Verdict.RETRY:
                next_at = self.settings.retry.next_attempt_at(delivery.attempts + 1, now, outcome.retry_after, self.rng)
                if next_at is None:
                    verdict = "dead"
                    error = f"gave up after {delivery.attempts + 1} attempts; last: {outcome.reason}"
            if verdict == "delivered":
                stats.delivered += 1
            elif verdict == "dead":
                stats.dead += 1
            else:
                stats.retried += 1
            results.append(
                AttemptResult(
                    delivery_id=delivery.id,
                    owner=delivery.lease_owner,
                    started_at=started,
                    verdict=verdict,
                    next_attempt_at=next_at,
                    status_code=status,
                    latency_ms=latency,
                    error=error,
                    response_excerpt=excerpt,
                )
            )
        if outcome.verdict is not Verdict.DELIVERED:
            log.warning(
                "delivery attempt failed",
                extra={
                    "destination": destination.name,
                    "delivery_ids": [d.id for d in batch],
                    "webhook_ids": sorted({d.webhook_id for d in batch}),
                    "verdicts": sorted({r.verdict for r in results}),
                    "status_code": status,
                    "reason": outcome.reason,
                },
            )
        return results

    async def _http(self, destination: Destination, request: HttpRequest) -> tuple[Outcome, int | None, str | None]:
        timeout = aiohttp.ClientTimeout(total=destination.settings.timeout_seconds)
        try:
            async with self.session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await response.content.read(MAX_RESPONSE_BYTES)
                headers = {k.lower(): v for k, v in response.headers.items()}
                outcome = destination.classify(response.status, headers, body)
                if outcome.retry_after is None and "retry-after" in headers:
                    retry_after = parse_retry_after(headers["retry-after"], self.clock.now())
                    outcome = Outcome(outcome.verdict, outcome.reason, retry_after)
                return outcome, response.status, response_excerpt(body)
        except TimeoutError:
            return Outcome(Verdict.RETRY, f"timed out after {destination.settings.timeout_seconds:g}s"), None, None
        except aiohttp.ClientError as exc:
            return Outcome(Verdict.RETRY, f"connection error: {type(exc).__name__}: {exc}"), None, None

    # -- reporting -----------------------------------------------------------------------------------

    def lane_stats(self) -> dict[str, LaneStats]:
        return {name: lane.stats for name, lane in self.lanes.items()}


def _decode(delivery: Delivery) -> dict[str, object]:
    event: dict[str, object] = orjson.loads(delivery.payload)
    return event


def new_session(user_agent: str = USER_AGENT, *, limit: int = 256) -> aiohttp.ClientSession:
    """The one outbound HTTP session: our own User-Agent (destinations may override per request), pooled
    connections, no cookie jar (each request stands alone)."""
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": user_agent},
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
    )
