"""Which deliveries go one at a time: the ordering of an event for destinations with `ordering: by_key`.

The key names the entity whose events a destination must see in the order they happened: the rule's
`ordering_key:` when the mapping declares one, else the canonical entity id (the subscription's, else the
order's, else the customer's, else the event's own id), scoped by the source (two stores' order 1005 are two
entities). Two different entities that happen to share a key are only delivered one after the other, never out
of order. The position within a key is when the provider event occurred (`occurred_at`), then the provider's
sequence number (`sequence:`, where the mapping reads one), then arrival. The outbox's claim enforces it
(bridge/outbox/base.py: only the first open delivery of a key is claimable).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.outbox.base import Ordering

#: where the canonical entity id is looked for, in this order
ENTITY_FIELDS = ("subscription", "order", "customer")


def entity_id(event: Mapping[str, Any]) -> str:
    """The id of the entity the event is about: subscription, else order, else customer, else the event itself."""
    for field in ENTITY_FIELDS:
        part = event.get(field)
        value = part.get("id") if isinstance(part, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return str(event.get("id", ""))


def occurred(event: Mapping[str, Any]) -> float:
    """`occurred_at` as Unix seconds (0 when it cannot be read; the mapping engine always writes RFC 3339)."""
    text = event.get("occurred_at")
    if not isinstance(text, str):
        return 0.0
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def ordering_for(event: Mapping[str, Any]) -> Ordering:
    """The event's place among its entity's events (see the module docstring)."""
    declared = event.get("ordering_key")
    key = declared if isinstance(declared, str) and declared else entity_id(event)
    source = event.get("source")
    scope = source.get("name") if isinstance(source, Mapping) else None
    sequence = event.get("sequence")
    seq = sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else 0
    return Ordering(key=f"{scope or ''}:{key}", at=occurred(event), seq=max(min(seq, 2**63 - 1), -(2**63)))
