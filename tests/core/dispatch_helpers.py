"""Shared by the dispatcher fault tests: a recording destination endpoint on 127.0.0.1 that can hold requests
until the test lets them go, and signed Shopify orders built from the real fixture."""

from __future__ import annotations

import asyncio
import copy
import json
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bridge.sinks.server import serve
from tests.harness import FIXTURES, Bridge
from tests.providers.signing import sign

SHOPIFY_SECRET = "shpss_bridge_dispatch_tests_0123456789"
SHOPIFY_SOURCE = {"shopify": {"provider": "shopify", "secrets": [SHOPIFY_SECRET]}}
_ORDER = json.loads((FIXTURES / "shopify" / "orders-create.json").read_bytes())


class Recorder:
    """Records every request (method, path, lower-case headers, body, JSON) and answers each with the next
    scripted status (200 when none is left). While `hold` is true each arriving request waits at its own gate
    until `release(i)`; `arrived` counts requests seen so far."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: deque[tuple[int, dict[str, str]]] = deque()
        self.hold = False
        self.gates: list[asyncio.Event] = []
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "PUT"])])

    def script(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.statuses.append((status, dict(headers or {})))

    def release(self, index: int) -> None:
        self.gates[index].set()

    def release_all(self) -> None:
        self.hold = False
        for gate in self.gates:
            gate.set()

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        record = {
            "method": request.method,
            "path": request.url.path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            "json": document,
        }
        self.requests.append(record)
        gate = asyncio.Event()
        self.gates.append(gate)
        if self.hold:
            await gate.wait()
        status, headers = self.statuses.popleft() if self.statuses else (200, {})
        record["status"] = status
        return JSONResponse({"ok": 200 <= status < 300}, status_code=status, headers=headers)


@asynccontextmanager
async def recorder() -> AsyncIterator[tuple[Recorder, str]]:
    sink = Recorder()
    async with serve(sink.app) as url:
        try:
            yield sink, url
        finally:
            sink.release_all()


def shopify_order(order_id: int, **changes: Any) -> bytes:
    """The real orders/create fixture as order `order_id`; `changes` set top-level fields, and
    `user_agent` / `browser_ip` set `client_details.*`."""
    order = copy.deepcopy(_ORDER)
    order.update(id=order_id, order_number=order_id, name=f"#{order_id}")
    client = order.setdefault("client_details", {})
    for key in ("user_agent", "browser_ip"):
        if key in changes:
            client[key] = changes.pop(key)
    order.update(changes)
    return json.dumps(order).encode()


async def post_shopify(bridge: Bridge, body: bytes, now: float, webhook_id: str) -> httpx.Response:
    headers = sign("shopify", body, secret=SHOPIFY_SECRET, now=now, event_type="orders/create", event_id=webhook_id)
    return await bridge.client.post("/webhooks/shopify", content=body, headers=headers)


async def delivery_detail(bridge: Bridge, delivery_id: int) -> dict[str, Any]:
    response = await bridge.ops("GET", f"/ops/deliveries/{delivery_id}")
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


async def by_event_id(bridge: Bridge, destination: str) -> dict[str, dict[str, Any]]:
    """Delivery rows of `destination` keyed by canonical event id."""
    return {row["event_id"]: row for row in await bridge.deliveries(destination=destination)}
