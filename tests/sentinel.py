"""A sentinel purchase for "nothing more arrives" checks, instead of sleeping and counting.

Post it after the requests under test and wait until the sinks have accepted it: by then every delivery made
before it has been claimed (deliveries are claimed in the order they fall due), so what the sinks hold is
final once no delivery is pending or in flight. The sentinel is its own purchase (its own event, payment and
customer ids), routed like any purchase, and is recognised in any destination's request body by its id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from bridge.sinks.base import StrictFake
from tests.harness import Bridge, stripe_case


async def _until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the sentinel did not arrive in time")
        await asyncio.sleep(0.02)


def sentinel_body(index: int = 1) -> tuple[bytes, str]:
    """(a signed-ready Stripe payment_intent.succeeded body, its payment id) that no other request uses."""
    event = orjson.loads(stripe_case("payment_intent.succeeded"))
    payment = f"pi_sentinel_{index}"
    event["id"] = f"evt_sentinel_{index}"
    event["data"]["object"]["id"] = payment
    event["data"]["object"]["customer"] = f"cus_sentinel_{index}"  # the data-activation API needs a customer
    return orjson.dumps(event), payment


def carries(request: dict[str, Any], payment: str) -> bool:
    return payment.encode() in request["body"]


async def send_sentinel(
    bridge: Bridge, sinks: Iterable[StrictFake], *, index: int = 1, timestamp: float | None = None
) -> str:
    """Post the sentinel and wait until every sink in `sinks` has accepted it; returns its payment id."""
    body, payment = sentinel_body(index)
    response = await bridge.post_stripe(body, **({"timestamp": timestamp} if timestamp is not None else {}))
    assert response.status_code == 200, response.text
    targets = list(sinks)
    await _until(lambda: all(any(carries(r, payment) for r in sink.received) for sink in targets))
    return payment


async def settled(bridge: Bridge) -> None:
    """Wait until no delivery is pending or in flight (nothing is left that could still reach a sink)."""

    async def idle() -> bool:
        return all(row["status"] in ("delivered", "dead") for row in await bridge.deliveries())

    await _until(idle)


def without_sentinel(requests: Iterable[dict[str, Any]], payment: str) -> list[dict[str, Any]]:
    return [r for r in requests if not carries(r, payment)]
