"""A strict local GA4 Measurement Protocol endpoint (spec: ECOSYSTEM_DESTINATIONS.md §1).

POST /mp/collect and /debug/mp/collect with `?measurement_id=…&api_secret=…` (or `firebase_app_id`); JSON body
< 130,000 bytes with `client_id`, 1–25 events. Every rule the real service applies silently is checked: event
and param names (regex, ≤ 40, not reserved), ≤ 25 scalar params (only `items` may be a list), text ≤ 100,
`timestamp_micros` an integer of 16 digits within [now − 72 h, now + 15 min], purchase/refund with a
`transaction_id` and a numeric `value` with an upper-case ISO currency, `user_data` only SHA-256 hex (and only
with `user_id`), consent values GRANTED/DENIED.

Modes: `strict` (default) answers 400 with `validationMessages` on a violation; `realistic` answers 204 like
Google and files the request under `dropped_as_bot` (accepted, recorded nothing). The debug path always
answers 200 `{"validationMessages": [...]}` and records nothing as an event (the request is in `received`
with `debug: True`). Accepted purchases are recorded by transaction_id in `transactions`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.sinks import checks
from bridge.sinks.base import Reject, StrictFake

MAX_BODY = 130_000
MAX_EVENTS = 25
MAX_AGE = 72 * 3600
MAX_FUTURE = 15 * 60
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,39}")
RESERVED_EVENTS = {
    "ad_activeview", "ad_click", "ad_exposure", "ad_impression", "ad_query", "adunit_exposure", "app_clear_data",
    "app_install", "app_update", "app_remove", "error", "first_open", "first_visit", "in_app_purchase",
    "os_update", "screen_view", "session_start", "user_engagement",
}  # fmt: skip
RESERVED_PREFIXES = ("_", "firebase_", "ga_", "google_", "gtag.", "notification_")
ITEM_FIELDS = {
    "item_id", "item_name", "affiliation", "coupon", "discount", "index", "item_brand", "item_category",
    "item_category2", "item_category3", "item_category4", "item_category5", "item_list_id", "item_list_name",
    "item_variant", "location_id", "price", "quantity",
}  # fmt: skip
USER_DATA_KEYS = {"sha256_email_address", "sha256_phone_number", "address"}
ADDRESS_HASHED = {"sha256_first_name", "sha256_last_name", "sha256_street"}
ADDRESS_PLAIN = {"city", "region", "postal_code", "country"}


class Ga4Fake(StrictFake):
    paths = (("/mp/collect", ("POST",)), ("/debug/mp/collect", ("POST",)))

    def __init__(
        self, measurement_id: str, api_secret: str, *, mode: str = "strict", now: Callable[[], float] = time.time
    ) -> None:
        self.measurement_id = measurement_id
        self.api_secret = api_secret
        self.mode = mode
        self.now = now
        self.transactions: dict[str, int] = {}
        super().__init__()

    def validate(self, record: dict[str, Any]) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = []

        def bad(path: str, description: str, code: str = "VALUE_INVALID") -> None:
            messages.append({"fieldPath": path, "description": description, "validationCode": code})

        query = record["query"]
        ids = [key for key in ("measurement_id", "firebase_app_id") if key in query]
        if len(ids) != 1:
            bad("measurement_id", "exactly one of measurement_id / firebase_app_id is required", "VALUE_REQUIRED")
        elif query.get("measurement_id") != self.measurement_id:
            bad("measurement_id", "unknown measurement_id")
        if query.get("api_secret") != self.api_secret:
            bad("api_secret", "api_secret missing or not this stream's")
        if len(record["body"]) >= MAX_BODY:
            bad("", f"body is {len(record['body'])} bytes; the limit is < 130 kB", "VALUE_OUT_OF_BOUNDS")
        document = self.parse_json(record, lambda message: {"validationMessages": [{"description": message}]})
        if not isinstance(document, dict):
            bad("", "body must be an object")
            return messages
        if not (isinstance(document.get("client_id"), str) and document["client_id"]):
            bad("client_id", "client_id is required for web streams", "VALUE_REQUIRED")
        now = self.now()
        self._check_time(document, "timestamp_micros", now, bad)
        if "user_data" in document:
            self._check_user_data(document, bad)
        consent = document.get("consent", {})
        if not isinstance(consent, dict):
            bad("consent", "consent must be an object")
        else:
            for key, value in consent.items():
                if key not in ("ad_user_data", "ad_personalization") or value not in ("GRANTED", "DENIED"):
                    bad(f"consent.{key}", "consent fields are ad_user_data / ad_personalization: GRANTED or DENIED")
        events = document.get("events")
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
            bad("events", f"1 to {MAX_EVENTS} events", "EXCEEDED_MAX_ENTITIES")
            return messages
        for index, event in enumerate(events):
            self._check_event(event, f"events[{index}]", now, bad)
        return messages

    @staticmethod
    def _check_time(node: Mapping[str, Any], path: str, now: float, bad: Callable[..., None]) -> None:
        if "timestamp_micros" not in node:
            return
        stamp = node["timestamp_micros"]
        if not checks.is_int(stamp) or len(str(stamp)) < 16:
            bad(path, "timestamp_micros must be an integer in microseconds (16 digits)")
            return
        seconds = stamp / 1_000_000
        if seconds < now - MAX_AGE:
            bad(path, "timestamp_micros is more than 72 hours in the past", "VALUE_OUT_OF_BOUNDS")
        if seconds > now + MAX_FUTURE:
            bad(path, "timestamp_micros is in the future", "VALUE_OUT_OF_BOUNDS")

    @staticmethod
    def _check_user_data(document: Mapping[str, Any], bad: Callable[..., None]) -> None:
        user_data = document["user_data"]
        if not isinstance(document.get("user_id"), str):
            bad("user_data", "user_id must be present whenever user_data is provided", "VALUE_REQUIRED")
        if not isinstance(user_data, dict) or set(user_data) - USER_DATA_KEYS:
            bad("user_data", "user_data has only sha256_email_address, sha256_phone_number and address")
            return
        for key in ("sha256_email_address", "sha256_phone_number"):
            values = user_data.get(key, [])
            if not isinstance(values, list) or not all(checks.is_hex64(v) for v in values):
                bad(f"user_data.{key}", "must be a list of SHA-256 hex digests (plaintext refused)")
        for index, address in enumerate(user_data.get("address", [])):
            if not isinstance(address, dict) or set(address) - ADDRESS_HASHED - ADDRESS_PLAIN:
                bad(f"user_data.address[{index}]", "unknown address field")
                continue
            for key in ADDRESS_HASHED & set(address):
                if not checks.is_hex64(address[key]):
                    bad(f"user_data.address[{index}].{key}", "must be a SHA-256 hex digest")
            for key in ADDRESS_PLAIN & set(address):
                if not isinstance(address[key], str) or checks.is_hex64(address[key]):
                    bad(f"user_data.address[{index}].{key}", "is sent normalised, not hashed")

    def _check_event(self, event: Any, path: str, now: float, bad: Callable[..., None]) -> None:
        if not isinstance(event, dict) or not isinstance(event.get("name"), str):
            bad(f"{path}.name", "event name is required", "VALUE_REQUIRED")
            return
        name = event["name"]
        if not NAME.fullmatch(name):
            bad(
                f"{path}.name",
                "event names are ≤ 40 letters, digits, underscores, starting with a letter",
                "NAME_INVALID",
            )
        if name in RESERVED_EVENTS or name.startswith(RESERVED_PREFIXES):
            bad(f"{path}.name", f"{name} is reserved", "NAME_RESERVED")
        self._check_time(event, f"{path}.timestamp_micros", now, bad)
        params = event.get("params", {})
        if not isinstance(params, dict):
            bad(f"{path}.params", "params must be an object")
            return
        if len(params) > 25:
            bad(f"{path}.params", "at most 25 params", "EXCEEDED_MAX_ENTITIES")
        for key, value in params.items():
            where = f"{path}.params.{key}"
            if not NAME.fullmatch(key) or key.startswith(RESERVED_PREFIXES):
                bad(where, "invalid or reserved param name", "NAME_INVALID")
            if key == "items":
                self._check_items(value, where, bad)
            elif value is None or isinstance(value, list | dict):
                bad(where, "param values must be scalars")
            elif isinstance(value, str) and len(value) > 100:
                bad(where, "text params are at most 100 characters", "VALUE_OUT_OF_BOUNDS")
        if name in ("purchase", "refund"):
            if not (isinstance(params.get("transaction_id"), str) and params["transaction_id"]):
                bad(f"{path}.params.transaction_id", f"{name} needs a transaction_id", "VALUE_REQUIRED")
        if "value" in params:
            if not checks.is_number(params["value"]):
                bad(f"{path}.params.value", "value must be a number, not text")
            currency = params.get("currency")
            if not (isinstance(currency, str) and checks.CURRENCY.fullmatch(currency)):
                bad(
                    f"{path}.params.currency",
                    "currency (ISO 4217, upper case) is required with value",
                    "VALUE_REQUIRED",
                )

    @staticmethod
    def _check_items(items: Any, path: str, bad: Callable[..., None]) -> None:
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            bad(path, "items must be a list of objects")
            return
        for index, item in enumerate(items):
            if "item_id" not in item and "item_name" not in item:
                bad(f"{path}[{index}]", "an item needs item_id or item_name", "VALUE_REQUIRED")
            if len(set(item) - ITEM_FIELDS) > 10:
                bad(f"{path}[{index}]", "at most 10 custom item params", "EXCEEDED_MAX_ENTITIES")
            for key in ("price", "quantity"):
                if key in item and not checks.is_number(item[key]):
                    bad(f"{path}[{index}].{key}", f"{key} must be a number")

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        try:
            messages = self.validate(record)
        except Reject as reject:  # not JSON
            messages = [{"fieldPath": "", "description": reject.why, "validationCode": "VALUE_INVALID"}]
        if record["path"].startswith("/debug/"):
            record["debug"] = True
            return 200, {"validationMessages": messages}, {}
        if messages:
            if self.mode == "realistic":
                record["dropped"] = True
                record["why"] = messages
                return 204, None, {}
            raise Reject(400, "; ".join(f"{m['fieldPath']}: {m['description']}" for m in messages),
                         {"validationMessages": messages})  # fmt: skip
        for event in record["json"]["events"]:
            if event["name"] == "purchase":
                key = event["params"]["transaction_id"]
                self.transactions[key] = self.transactions.get(key, 0) + 1
        return 204, None, {}
