"""Background upkeep: the retention purge, run periodically in the app's lifespan.

The rule is one function, `purge_expired`, used by the periodic task, by `POST /ops/outbox/purge` and so by
`bridge outbox purge`:

1. delivered deliveries and their attempts last updated more than `retention.delivered_days` ago, then webhooks
   received before that with nothing left to deliver (mapping_failed ones stay: a replay can still recover
   them), then their stored requests; `delivered_days: 0` keeps everything;
2. dedup keys (a source's provider event ids and body hashes, and its delivered facts) first seen more than
   `retention.dedup_days` ago whose rows are gone; `dedup_days: 0` keeps them for good.

Keys live in their own tables (bridge/outbox/dedup.py), so step 1 never makes an old event new again: a provider
retry or a replayed request after the purge is still a duplicate until its keys expire in step 2, long after any
provider stops retrying.

Time comes from the injected clock and nothing here sleeps on it blindly: like the dispatcher, the task sleeps
`interval / clock.scale` or until `wake()`; with a ManualClock a test moves time and calls `run_now()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from bridge.clock import Clock
from bridge.config import RetentionSettings
from bridge.errors import OutboxError
from bridge.outbox.base import Outbox

log = logging.getLogger("bridge.maintenance")

DAY = 86400.0
#: how often the periodic purge runs (it also runs once at start-up)
INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True)
class PurgeReport:
    """What one purge deleted, and the clock time it purged against."""

    at: float
    deliveries: int
    webhooks: int
    keys: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


async def purge_expired(
    outbox: Outbox,
    now: float,
    retention: RetentionSettings,
    *,
    delivered_days: float | None = None,
    statuses: Sequence[str] = ("delivered",),
) -> PurgeReport:
    """Apply the retention rule at `now`. `delivered_days` overrides the configured row horizon (an operator's
    one-off purge); the dedup keys always follow `retention.dedup_days`."""
    days = retention.delivered_days if delivered_days is None else delivered_days
    deliveries = webhooks = 0
    if days > 0:
        rows = await outbox.purge(now - days * DAY, statuses)
        deliveries, webhooks = rows.deliveries, rows.webhooks
    keys = 0
    if retention.dedup_days > 0:
        keys = await outbox.purge_keys(now - retention.dedup_days * DAY)
    return PurgeReport(now, deliveries, webhooks, keys)


class Maintenance:
    """The periodic purge task: `start()` in the lifespan, `stop()` before the outbox closes."""

    def __init__(
        self, outbox: Outbox, clock: Clock, retention: RetentionSettings, *, interval: float = INTERVAL_SECONDS
    ) -> None:
        self.outbox = outbox
        self.clock = clock
        self.retention = retention
        self.interval = interval
        #: the last completed round (None before the first)
        self.last: PurgeReport | None = None
        #: rounds that failed (the store was unavailable); the next round simply tries again
        self.failures = 0
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[PurgeReport]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bridge-maintenance")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in self._waiters:
            waiter.cancel()
        self._waiters = []

    def wake(self) -> None:
        """Run a round now (the clock moved, or an operator asked)."""
        self._wake.set()

    async def run_now(self) -> PurgeReport:
        """Wake the task and wait for the report of a round that starts after this call."""
        if self._task is None or self._task.done():
            raise OutboxError("the maintenance task is not running")
        waiter: asyncio.Future[PurgeReport] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.wake()
        return await waiter

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            try:
                report = await purge_expired(self.outbox, self.clock.now(), self.retention)
            except Exception as exc:  # the store was unavailable, or a bug: count it, never let the task die
                self.failures += 1
                if isinstance(exc, OutboxError):
                    log.warning("retention purge failed; it runs again later", extra={"error": str(exc)})
                else:
                    log.exception("retention purge crashed; it runs again later")
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            else:
                self.last = report
                if report.deliveries or report.webhooks or report.keys:
                    log.info("retention purge", extra=report.as_dict())
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(report)
            if not self._waiters:  # nobody asked for another round meanwhile
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval / self.clock.scale)
