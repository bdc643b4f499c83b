"""A strict local Data Activation ingestion endpoint (seed: data-activation-server-side-events.txt).

POST /v1/events with `Authorization: Bearer <key>` (401 otherwise) and a JSON body: `event` (text), `timestamp`
(ISO 8601 with a zone), a customer identifier (`customer_id` text or `email_hash` 64 hex), `properties` (object)
and, for the documented events, their key properties (`order_value` a number, `currency` 3 letters, dates
ISO 8601). `Idempotency-Key` (or `event_id`) deduplicates: repeats are answered 200 and counted once
(`counted`). 202 for a new event. Optional rate limits answer 429 + Retry-After.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bridge.sinks.base import Reject, StrictFake, is_number, is_text

PATH = "/v1/events"
KEY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "purchase_completed": ("order_id", "order_value", "currency"),
    "subscription_started": ("plan", "start_date"),
    "subscription_canceled": ("cancel_date",),
    "contract_renewed": ("new_end_date",),
    "consent_updated": ("consent_type", "status"),
}
_DATES = ("start_date", "cancel_date", "new_end_date")


def _iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


class DataActivationFake(StrictFake):
    paths = ((PATH, ("POST",)),)

    def __init__(
        self,
        api_key: str,
        *,
        rate_limits: Sequence[tuple[int, float]] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.api_key = api_key
        self.counted: dict[str, dict[str, Any]] = {}
        super().__init__(rate_limits=rate_limits, **({"clock": clock} if clock else {}))

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        if record["headers"].get("authorization") != f"Bearer {self.api_key}":
            raise Reject(401, "invalid or missing credentials", {"error": "Unauthorized"})
        event = self.parse_json(record, lambda message: {"error": message})

        def bad(message: str) -> Reject:
            return Reject(400, message, {"error": "Bad Request", "detail": message})

        if not isinstance(event, dict):
            raise bad("body must be an object")
        if not is_text(event.get("event")):
            raise bad("event: required")
        if not _iso(event.get("timestamp")):
            raise bad("timestamp: required, ISO 8601 with a time zone")
        has_id = is_text(event.get("customer_id"))
        hashed = event.get("email_hash")
        if hashed is not None and not (isinstance(hashed, str) and re.fullmatch(r"[0-9a-f]{64}", hashed)):
            raise bad("email_hash: must be a lower-case hex SHA-256")
        if not has_id and hashed is None:
            raise bad("a customer identifier is required (customer_id or email_hash)")
        props = event.get("properties")
        if not isinstance(props, dict):
            raise bad("properties: required object")
        missing = [key for key in KEY_PROPERTIES.get(event["event"], ()) if key not in props]
        if missing:
            raise bad(f"properties missing {missing}")
        if "order_value" in props and not is_number(props["order_value"]):
            raise bad("properties.order_value must be a number")
        if "currency" in props and not (
            isinstance(props["currency"], str) and re.fullmatch(r"[A-Z]{3}", props["currency"])
        ):
            raise bad("properties.currency must be a 3-letter code")
        for field in _DATES:
            if field in props and not _iso(props[field]):
                raise bad(f"properties.{field} must be ISO 8601")
        dedup = record["headers"].get("idempotency-key") or event.get("event_id")
        if dedup is not None and dedup in self.counted:
            return 200, {"status": "duplicate"}, {}
        self.counted[str(dedup or f"_anon{record['seq']}")] = event
        return 202, {"status": "accepted"}, {}
