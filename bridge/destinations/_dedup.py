"""Dedup ids for every destination, derived deterministically from the canonical dedup key.

The canonical dedup key of an event is its (name, id) pair: the outbox holds one delivery per destination, name
and id, and every retry, crash recovery or replay of that delivery renders the same ids here, so a destination
that deduplicates counts the fact once.

    Meta event_id, TikTok event_id   the canonical id itself: it must equal the browser pixel's eventID for
                                     browser+server dedup, and both platforms dedup per event name
    GA4 transaction_id               the order id (else the canonical id): GA4 dedups purchases by it
    Segment messageId                "<name>:<id>" when it fits 100 characters, else the UUID below
    PostHog uuid, Mixpanel $insert_id, Amplitude insert_id
                                     a UUID (version 5) of "<name>:<id>": valid for PostHog, 36 characters of
                                     [0-9a-f-] for Mixpanel, the same for every attempt
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from bridge.destinations import _common as c

#: fixed namespace of the bridge's UUIDs (changing it would change every derived id)
NAMESPACE = uuid.UUID("6f1d3b2a-9c47-5e0b-8a41-2d7f3c9e1b55")


def dedup_key(event: Mapping[str, Any]) -> str:
    """`<name>:<id>` — the canonical dedup key. RenderError if the event has no name or id."""
    return f"{c.event_name(event)}:{c.event_id(event)}"


def event_id(event: Mapping[str, Any]) -> str:
    """The canonical id as the platforms that dedup per event name want it (Meta, TikTok)."""
    return c.event_id(event)


def key_uuid(event: Mapping[str, Any]) -> str:
    """A UUID derived from the dedup key (PostHog uuid, Mixpanel $insert_id, Amplitude insert_id)."""
    return str(uuid.uuid5(NAMESPACE, dedup_key(event)))


def message_id(event: Mapping[str, Any], limit: int = 100) -> str:
    """The dedup key itself when it is printable and fits `limit` characters, else its UUID (Segment)."""
    key = dedup_key(event)
    if len(key) <= limit and key.isprintable():
        return key
    return key_uuid(event)


def transaction_id(event: Mapping[str, Any]) -> str:
    """The order id the purchase (and its refunds) belong to, else the canonical id (GA4 transaction_id)."""
    return c.text(event, "order.id") or c.event_id(event)
