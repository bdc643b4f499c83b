"""A strict local Amplitude HTTP V2 endpoint (spec: ECOSYSTEM_DESTINATIONS.md §6).

POST /2/httpapi (and /batch); JSON `{api_key, events, options?}`; unknown key → 400 "Invalid API key"; 1–2,000
events; body < 1 MB (413). Each event: `event_type` text, not an `[Amplitude] …` name; `user_id` or
`device_id`, each at least `options.min_id_length` (default 5) characters and not a placeholder; `time` an
integer in **milliseconds** (13 digits: ISO text and seconds refused); `productId`/`revenueType` only with
`revenue` or `price`; numeric revenue fields; `currency` `[A-Z]{3}`; strings ≤ 1,024 characters.

Invalid events make the whole request a 400 listing them by index (`events_with_invalid_fields`,
`events_with_missing_fields`); nothing of it is stored, as Amplitude does. Accepted events are in `events`; a
repeat of (device_id or user_id, insert_id) counts in `duplicates` (Amplitude ignores it for 7 days).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.sinks import checks
from bridge.sinks.base import Reject, StrictFake

MAX_BODY = 1_000_000
MAX_EVENTS = 2000
BLOCKED_IDS = {
    "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", "",
    "00000000-0000-0000-0000-000000000000", "{}", "lmy47d", "0", "-1",
}  # fmt: skip
NUMERIC = ("price", "quantity", "revenue")


def _long_text(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) > 1024
    if isinstance(value, dict):
        return any(_long_text(v) for v in value.values())
    if isinstance(value, list):
        return any(_long_text(v) for v in value)
    return False


class AmplitudeFake(StrictFake):
    paths = (("/2/httpapi", ("POST",)), ("/batch", ("POST",)))

    def __init__(self, api_key: str, *, now: Callable[[], float] = time.time) -> None:
        self.api_key = api_key
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.duplicates = 0
        self._seen: set[tuple[Any, Any]] = set()
        super().__init__()

    @staticmethod
    def _problem(event: Any, min_id: int) -> tuple[str, str] | None:
        """(kind, field): kind is 'missing' or 'invalid'."""
        if not isinstance(event, dict):
            return "invalid", "event"
        name = event.get("event_type")
        if not isinstance(name, str) or not name:
            return "missing", "event_type"
        if name.startswith("[Amplitude]"):
            return "invalid", "event_type"
        ids = [event.get(key) for key in ("user_id", "device_id") if event.get(key) is not None]
        if not ids:
            return "missing", "user_id"
        for key in ("user_id", "device_id"):
            value = event.get(key)
            if value is not None and (
                not isinstance(value, str) or len(value) < min_id or value.lower() in BLOCKED_IDS
            ):
                return "invalid", key
        stamp = event.get("time")
        if stamp is not None and not (checks.is_int(stamp) and len(str(stamp)) == 13):
            return "invalid", "time"
        for key in NUMERIC:
            if key in event and not checks.is_number(event[key]):
                return "invalid", key
        if ("productId" in event or "revenueType" in event) and "revenue" not in event and "price" not in event:
            return "missing", "revenue"
        if "currency" in event and not (
            isinstance(event["currency"], str) and checks.CURRENCY.fullmatch(event["currency"])
        ):
            return "invalid", "currency"
        if _long_text(event):
            return "invalid", "event_properties"
        return None

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        if len(record["body"]) >= MAX_BODY:
            raise Reject(413, "body of 1 MB or more", {"code": 413, "error": "Payload too large"})
        document = self.parse_json(record, lambda message: {"code": 400, "error": message})
        if not isinstance(document, dict) or document.get("api_key") != self.api_key:
            raise Reject(400, "invalid api key", {"code": 400, "error": "Invalid API key", "missing_field": None})
        events = document.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
            raise Reject(
                400,
                "events must be 1-2000",
                {"code": 400, "error": "Request missing required field", "missing_field": "events"},
            )
        options = document.get("options") or {}
        min_id = options.get("min_id_length", 5) if isinstance(options, dict) else 5
        invalid: dict[str, list[int]] = {}
        missing: dict[str, list[int]] = {}
        for index, event in enumerate(events):
            problem = self._problem(event, min_id if checks.is_int(min_id) else 5)
            if problem is not None:
                (missing if problem[0] == "missing" else invalid).setdefault(problem[1], []).append(index)
        if invalid or missing:
            body = {
                "code": 400,
                "error": "Request contains invalid or missing fields",
                "events_with_invalid_fields": invalid,
                "events_with_missing_fields": missing,
            }
            raise Reject(400, f"invalid {invalid} missing {missing}", body)
        for event in events:
            key = (event.get("device_id") or event.get("user_id"), event.get("insert_id"))
            if event.get("insert_id") and key in self._seen:
                self.duplicates += 1
                continue
            self._seen.add(key)
            self.events.append(event)
        return (
            200,
            {
                "code": 200,
                "events_ingested": len(events),
                "payload_size_bytes": len(record["body"]),
                "server_upload_time": int(self.now() * 1000),
            },
            {},
        )
