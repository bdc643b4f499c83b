"""Shared by the scale-out tests: signed Stripe events built from the real fixtures, and window counting."""

from __future__ import annotations

import orjson

from tests.harness import stripe_case


def purchase(index: int, now: float, prefix: str = "pi_scale") -> bytes:
    """A Stripe payment_intent.succeeded (the real fixture) for payment `{prefix}_{index}`, created at `now`."""
    event = orjson.loads(stripe_case("payment_intent.succeeded"))
    event["id"] = f"evt_{prefix}_{index}"
    event["created"] = int(now)
    event["data"]["object"]["id"] = f"{prefix}_{index}"
    event["data"]["object"]["customer"] = f"cus_{prefix}_{index}"
    return orjson.dumps(event)


def subscription(kind: str, sub_id: str, created: int, event_id: str) -> bytes:
    """A Stripe customer.subscription.<kind> (created, updated or deleted; the real fixtures) for `sub_id`."""
    event = orjson.loads(stripe_case(f"customer.subscription.{kind}"))
    event["id"] = event_id
    event["created"] = created
    event["data"]["object"]["id"] = sub_id
    return orjson.dumps(event)


def most_in_window(times: list[float], window: float) -> int:
    """The most of `times` inside any window of `window` seconds."""
    times = sorted(times)
    best, left = 0, 0
    for right, t in enumerate(times):
        while times[left] <= t - window:
            left += 1
        best = max(best, right - left + 1)
    return best
