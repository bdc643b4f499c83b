"""Supervised tasks: a dispatcher task (its claim loop, each lane's workers) that raises or returns before the
dispatcher stops is logged, counted and started again — at once the first time, then with a doubling pause, so a
task that keeps failing cannot spin."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("bridge.dispatcher")

#: real seconds between restarts of a task that keeps failing: doubling from the first, up to the last
RESTART_BACKOFF = (0.05, 5.0)


def supervise(
    name: str, body: Callable[[], Awaitable[None]], stopping: Callable[[], bool], restarted: Callable[[], None]
) -> asyncio.Task[None]:
    """Run `body` in a task named `name` until `stopping()`; `restarted()` is called before each restart."""
    return asyncio.create_task(_supervised(name, body, stopping, restarted), name=name)


async def _supervised(
    name: str, body: Callable[[], Awaitable[None]], stopping: Callable[[], bool], restarted: Callable[[], None]
) -> None:
    delay = 0.0
    while not stopping():
        try:
            await body()
        except asyncio.CancelledError:
            raise
        except Exception:
            if stopping():
                return
            log.exception("dispatcher task failed; starting it again", extra={"task": name})
        else:
            if stopping():
                return
            log.error("dispatcher task ended; starting it again", extra={"task": name})
        restarted()
        await asyncio.sleep(delay)
        delay = min(max(delay * 2, RESTART_BACKOFF[0]), RESTART_BACKOFF[1])
