"""Helpers the analytics and ad destinations share: the event's time against the platform's age limit, and
packing a batch into one request body with each platform's count and byte limits.

Batches never fail for one bad event: when the event at index i > 0 cannot be rendered (too old, a required
field missing, too large), BatchTooLarge(fits=i) makes the dispatcher send the i events before it and offer
the rest again; the bad event then comes first and `fits=1` sends it on its own, where its RenderError makes
just that delivery `dead` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bridge.destinations import _common as c
from bridge.errors import RenderError
from bridge.events import format_time


def occurred_at(event: Mapping[str, Any]) -> float:
    """The event's `occurred_at` as Unix seconds; RenderError if it is missing or not a time."""
    value = c.text(event, "occurred_at")
    if value is None:
        raise RenderError("the event has no occurred_at")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RenderError(f"occurred_at {value!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise RenderError(f"occurred_at {value!r} has no time zone")
    return moment.timestamp()


def event_time(event: Mapping[str, Any], now: float, *, max_age: float | None = None, platform: str = "") -> float:
    """When the event happened, never later than `now` (a provider clock ahead of ours must not make a platform
    drop the event as from the future). Older than `max_age` seconds: RenderError naming the platform's limit,
    so the delivery ends `dead` with that reason instead of being dropped silently by the platform."""
    moment = min(occurred_at(event), now)
    if max_age is not None and now - moment > max_age:
        raise RenderError(f"the event is {_age(now - moment)} old; {platform} accepts events up to {_age(max_age)} old")
    return moment


def title(name: str) -> str:
    """`subscription_started` → `Subscription Started` (Segment's and Mixpanel's Title Case event names)."""
    return " ".join(part.capitalize() for part in name.split("_") if part)


def iso_ms(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds: `2024-01-15T14:30:45.000Z`."""
    text = format_time(round(epoch, 3))
    if "." not in text:
        return text[:-1] + ".000Z"
    whole, fraction = text[:-1].split(".")
    return f"{whole}.{fraction[:3].ljust(3, '0')}Z"


def _age(seconds: float) -> str:
    """A duration as people read an age limit: whole days from a week up, hours from an hour up."""
    if seconds >= 7 * 86400:
        days = seconds / 86400
        return f"{days:.0f} days" if days == int(days) else f"{days:.1f} days"
    if seconds >= 3600:
        hours = seconds / 3600
        return f"{hours:.0f} h" if hours == int(hours) else f"{hours:.1f} h"
    return f"{seconds:.0f} s"


def pack(
    events: Sequence[Mapping[str, Any]],
    encode: Callable[[Mapping[str, Any]], bytes],
    *,
    platform: str,
    max_events: int,
    max_bytes: int,
    overhead: int,
    max_event_bytes: int | None = None,
    group: Callable[[Mapping[str, Any]], Hashable] | None = None,
) -> list[bytes]:
    """Each event encoded (JSON bytes), all of them fitting one request: at most `max_events`, and `overhead`
    (the body around the events) plus the parts and their separators at most `max_bytes`. `group`: events of
    one request must agree on it (e.g. GA4's request-level client id). Raises RenderError for a single event
    that cannot go, BatchTooLarge for a batch that can only partly go (see the module doc)."""
    if not events:
        raise RenderError("nothing to render")
    parts: list[bytes] = []
    size = overhead
    first_group: Hashable = None
    for index, event in enumerate(events):
        try:
            part = encode(event)
            if max_event_bytes is not None and len(part) > max_event_bytes:
                raise RenderError(
                    f"the event is {len(part)} bytes; {platform} takes at most {max_event_bytes} per event"
                )
            key = group(event) if group is not None else None
        except RenderError as exc:
            if len(events) == 1:
                raise
            raise c.BatchTooLarge(f"event {index} cannot be sent: {exc}", max(index, 1)) from None
        if index and key != first_group:
            raise c.BatchTooLarge(f"event {index} belongs in another {platform} request", index)
        size += len(part) + (1 if index else 0)
        if index >= max_events or size > max_bytes:
            if index == 0:
                raise RenderError(f"the request would be {size} bytes; {platform} takes at most {max_bytes}")
            why = f"{platform} takes at most {max_events} events" if index >= max_events else f"{max_bytes} bytes"
            raise c.BatchTooLarge(f"batch over the limit ({why}); the first {index} fit", index)
        if index == 0:
            first_group = key
        parts.append(part)
    return parts
