"""A destination endpoint the test controls (answers with `status`, records what it accepted), and waiting
for the outbox to reach a state (polled through the ops API, bounded)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class SwitchSink:
    """POST /collect answers `status` (400: the bridge marks the delivery dead at once; 200: delivered)."""

    def __init__(self, status: int = 400) -> None:
        self.status = status
        self.accepted: list[Any] = []

    @property
    def app(self) -> Starlette:
        async def collect(request: Request) -> JSONResponse:
            body = await request.json()
            if self.status >= 300:
                return JSONResponse({"error": "invalid event", "detail": "field value rejected"}, self.status)
            self.accepted.append(body)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/collect", collect, methods=["POST"])])


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail after `timeout` seconds (a bound, not a timing assumption)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
