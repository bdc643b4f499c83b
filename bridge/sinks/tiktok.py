"""A strict local TikTok Events API 2.0 endpoint (spec: ECOSYSTEM_DESTINATIONS.md §7).

POST /open_api/v1.3/event/track/ with the token in the `Access-Token` header and a JSON body
`{"event_source", "event_source_id", "test_event_code"?, "data": [...]}`. TikTok answers HTTP 200 whatever
happened and puts the verdict in the body's `code`; so does this sink. One invalid event refuses the whole
request, as TikTok does:

- `Access-Token` wrong or missing, `event_source_id` not this pixel: code 40001;
- anything else wrong: code 40002 with the rule that fired — `event_source` not web/app/offline/crm, `data`
  not 1–1,000 events, `event` empty, `event_time` not a 10-digit integer (milliseconds refused), `user.email`
  `user.phone` `user.external_id` not SHA-256 hex (a string or a list), `ip` `user_agent` `ttclid` `ttp`
  hashed or not text, `ip` not an address, an unknown `user` key, `properties.value` not a number,
  `properties.currency` not ISO 4217 (or missing beside a value), `limited_data_use` not a boolean.

Accepted: 200 `{"code": 0, "message": "OK", "request_id", "data": {}}`; events of a request with a
`test_event_code` are also listed in `test_events`; (event, event_id) pairs seen before are counted in
`duplicates` (TikTok keeps the first).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from bridge.sinks import checks
from bridge.sinks.base import Reject, StrictFake, is_text

PATH = "/open_api/v1.3/event/track/"
EVENT_SOURCES = {"web", "app", "offline", "crm"}
HASHED = {"email", "phone", "external_id"}
NEVER_HASHED = {"ip", "user_agent", "ttclid", "ttp"}
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_EVENTS = 1000


def answer(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": secrets.token_hex(12), "data": {}}


def refuse(code: int, message: str) -> Reject:
    """TikTok's refusal: HTTP 200, the error in the body."""
    return Reject(200, f"code {code}: {message}", answer(code, message))


class TikTokFake(StrictFake):
    paths = ((PATH, ("POST",)),)

    def __init__(self, pixel_code: str, access_token: str) -> None:
        self.pixel_code = pixel_code
        self.access_token = access_token
        self.events: list[dict[str, Any]] = []
        self.test_events: list[dict[str, Any]] = []
        self.duplicates = 0
        self._seen: set[tuple[str, str]] = set()
        super().__init__()

    def _check_event(self, event: Any, where: str) -> None:
        def bad(message: str) -> Reject:
            return refuse(40002, f"{where}: {message}")

        if not isinstance(event, dict):
            raise bad("each event is an object")
        if not is_text(event.get("event")):
            raise bad("event is required")
        stamp = event.get("event_time")
        if not checks.is_int(stamp) or not 10**9 <= stamp < 10**10:
            raise bad("event_time must be a 10-digit integer (Unix seconds)")
        if "event_id" in event and not is_text(event["event_id"]):
            raise bad("event_id must be a non-empty string")
        user = event.get("user", {})
        if not isinstance(user, dict):
            raise bad("user must be an object")
        for key, value in user.items():
            if key in HASHED:
                if not all(checks.is_hex64(v) for v in checks.strings(value)):
                    raise bad(f"user.{key} must be SHA-256 hex (plaintext or wrong hashing refused)")
            elif key in NEVER_HASHED:
                if not is_text(value) or checks.is_hex64(value):
                    raise bad(f"user.{key} must be sent in clear, not hashed")
            else:
                raise bad(f"unknown user parameter {key}")
        if "ip" in user and not checks.is_ip(user["ip"]):
            raise bad("user.ip is not an IP address")
        properties = event.get("properties", {})
        if not isinstance(properties, dict):
            raise bad("properties must be an object")
        if "value" in properties and not checks.is_number(properties["value"]):
            raise bad("properties.value must be a number")
        currency = properties.get("currency")
        if currency is not None and not (isinstance(currency, str) and CURRENCY.fullmatch(currency)):
            raise bad("properties.currency must be an ISO 4217 code")
        if "value" in properties and currency is None:
            raise bad("properties.value needs properties.currency")
        contents = properties.get("contents", [])
        if not isinstance(contents, list) or not all(isinstance(item, dict) for item in contents):
            raise bad("properties.contents must be a list of objects")
        for item in contents:
            if "price" in item and not checks.is_number(item["price"]):
                raise bad("properties.contents[].price must be a number")
            if "quantity" in item and not checks.is_int(item["quantity"]):
                raise bad("properties.contents[].quantity must be an integer")
        page = event.get("page", {})
        if not isinstance(page, dict) or not all(isinstance(v, str) for v in page.values()):
            raise bad("page must be an object of strings")
        if "limited_data_use" in event and not isinstance(event["limited_data_use"], bool):
            raise bad("limited_data_use must be a boolean")

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        if record["headers"].get("access-token") != self.access_token:
            raise refuse(40001, "Access-Token is missing, invalid or revoked")
        try:
            document = self.parse_json(record, lambda message: answer(40002, message))
        except Reject as reject:  # not JSON: TikTok still answers 200
            raise Reject(200, reject.why, reject.body) from None
        if not isinstance(document, dict):
            raise refuse(40002, "the body must be an object")
        if document.get("event_source") not in EVENT_SOURCES:
            raise refuse(40002, f"event_source must be one of {sorted(EVENT_SOURCES)}")
        if document.get("event_source_id") != self.pixel_code:
            raise refuse(40001, "no permission for this event_source_id")
        code = document.get("test_event_code")
        if code is not None and not is_text(code):
            raise refuse(40002, "test_event_code must be a string")
        data = document.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS:
            raise refuse(40002, f"data must be an array of 1 to {MAX_EVENTS} events")
        for index, event in enumerate(data):
            self._check_event(event, f"data[{index}]")
        for event in data:
            key = (event["event"], str(event.get("event_id")))
            if event.get("event_id") is not None and key in self._seen:
                self.duplicates += 1
            else:
                self._seen.add(key)
                self.events.append(event)
            if code:
                self.test_events.append(event)
        return 200, answer(0, "OK"), {}
