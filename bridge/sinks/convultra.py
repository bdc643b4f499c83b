"""A strict local Convultra Server API (seed: convultra-server-api.txt).

POST /v1/track and /v1/track/batch; `Authorization: Bearer <key>` (the documented `?api_key=` also works, and is
recorded, so tests can prove we never use it); JSON only; body ≤ 1 MB; batch 1..100 events; field types as the
doc's tables: `event_type` required text, `timestamp` ISO 8601, `properties.value` a number, `currency` a
3-letter code, `phone` E.164, no fields outside the documented objects. 1000 req/min (429 + Retry-After).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bridge.sinks.base import Reject, StrictFake, is_number, is_text

MAX_BODY = 1_000_000
MAX_BATCH = 100
TOP_LEVEL = {"event_type", "timestamp", "session_id", "user_id", "properties", "user_data", "context"}
USER_DATA = {"email", "phone", "first_name", "last_name", "city", "state", "postal_code", "country"}
CONTEXT = {"ip", "user_agent", "page_url", "referrer", "gclid", "fbclid", "msclkid"}


def _error(message: str) -> dict[str, Any]:
    return {"success": False, "error": message}


def validate_event(event: Any, where: str = "") -> None:
    """Raise Reject(400) unless `event` matches the documented Track Event body."""

    def bad(message: str) -> Reject:
        return Reject(400, f"{where}{message}", _error(f"{where}{message}"))

    if not isinstance(event, dict):
        raise bad("event must be an object")
    unknown = set(event) - TOP_LEVEL
    if unknown:
        raise bad(f"unknown field(s) {sorted(unknown)}")
    if not is_text(event.get("event_type")):
        raise bad("event_type is required")
    if "timestamp" in event:
        stamp = event["timestamp"]
        try:
            datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            raise bad(f"timestamp {stamp!r} is not ISO 8601") from None
        if not isinstance(stamp, str):
            raise bad("timestamp must be a string")
    for key in ("session_id", "user_id"):
        if key in event and not is_text(event[key]):
            raise bad(f"{key} must be a non-empty string")
    props = event.get("properties", {})
    if not isinstance(props, dict):
        raise bad("properties must be an object")
    if "order_id" in props and not is_text(props["order_id"]):
        raise bad("properties.order_id must be a string")
    if "value" in props and not is_number(props["value"]):
        raise bad(f"properties.value must be a number, got {type(props['value']).__name__}")
    if "currency" in props and not (
        isinstance(props["currency"], str) and re.fullmatch(r"[A-Z]{3}", props["currency"])
    ):
        raise bad(f"properties.currency must be a 3-letter ISO code, got {props['currency']!r}")
    if "items" in props:
        if not isinstance(props["items"], list) or not all(isinstance(i, dict) for i in props["items"]):
            raise bad("properties.items must be an array of objects")
        for index, item in enumerate(props["items"]):
            if "price" in item and not is_number(item["price"]):
                raise bad(f"properties.items[{index}].price must be a number")
            if "quantity" in item and not (is_number(item["quantity"]) and not isinstance(item["quantity"], float)):
                raise bad(f"properties.items[{index}].quantity must be an integer")
    for key, allowed in (("user_data", USER_DATA), ("context", CONTEXT)):
        block = event.get(key, {})
        if not isinstance(block, dict):
            raise bad(f"{key} must be an object")
        extra = set(block) - allowed
        if extra:
            raise bad(f"unknown {key} field(s) {sorted(extra)}")
        for field, value in block.items():
            if not isinstance(value, str):
                raise bad(f"{key}.{field} must be a string")
    phone = event.get("user_data", {}).get("phone")
    if phone is not None and not re.fullmatch(r"\+[1-9][0-9]{6,14}", phone):
        raise bad(f"user_data.phone {phone!r} is not E.164")


class ConvultraFake(StrictFake):
    paths = (("/v1/track", ("POST",)), ("/v1/track/batch", ("POST",)))

    def __init__(
        self,
        api_key: str,
        *,
        rate_limit: tuple[int, float] = (1000, 60.0),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.api_key = api_key
        super().__init__(rate_limits=[rate_limit], **({"clock": clock} if clock else {}))

    def rate_limited_body(self, retry_after: int) -> Any:
        return _error("Rate limit exceeded")

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        header = record["headers"].get("authorization", "")
        query_key = record["query"].get("api_key")
        if not (header == f"Bearer {self.api_key}" or (not header and query_key == self.api_key)):
            raise Reject(401, "missing or invalid API key", _error("Invalid API key"))
        if len(record["body"]) > MAX_BODY:
            raise Reject(413, f"request is {len(record['body'])} bytes (max {MAX_BODY})", _error("Payload too large"))
        document = self.parse_json(record, _error)
        if record["path"].endswith("/batch"):
            if (
                not isinstance(document, dict)
                or set(document) != {"events"}
                or not isinstance(document["events"], list)
            ):
                raise Reject(400, 'batch body must be {"events": [...]}', _error("events array required"))
            events = document["events"]
            if not 1 <= len(events) <= MAX_BATCH:
                raise Reject(400, f"batch has {len(events)} events (1..{MAX_BATCH})", _error("Too many events"))
            for index, event in enumerate(events):
                validate_event(event, f"events[{index}]: ")
            return 200, {"success": True, "accepted": len(events)}, {}
        validate_event(document)
        return 200, {"success": True, "event_id": f"evt_{secrets.token_hex(6)}"}, {}
