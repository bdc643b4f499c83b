"""A strict local Meta Conversions API endpoint (spec: ECOSYSTEM_DESTINATIONS.md §2).

POST /{vNN.N}/{pixel_id}/events; token as `Authorization: Bearer`, or `access_token` in the query or form
(recorded in `token_in_query`, so tests can prove the bridge never puts it in a URL); body JSON `{"data": [...]}`
(or a form with `data=<json>`), 1–1,000 events. One invalid event refuses the whole request (400 with a Graph
API `error`), as Meta does:

- `event_name` text; `event_time` integer **seconds** (13-digit milliseconds refused), not older than 7 days
  (62 for physical_store; code 100 subcode 2804003), not more than 1 h ahead; `action_source` in Meta's enum;
  `user_data` an object with at least one parameter;
- website events need `client_user_agent` and `event_source_url`;
- em ph fn ln ge db ct st zp country external_id: SHA-256 hex only (a string or list); client_ip_address,
  client_user_agent, fbc, fbp never hashed; fbc `fb.N.<13-digit ms>.<fbclid>`; IP a valid address;
- Purchase: `custom_data.currency` (ISO 4217) and a numeric `value`;
- data_processing_options ⊆ {LDU}; with LDU, country ∈ {0, 1} and state ∈ {0, 1000}.

Accepted: 200 `{events_received, messages, fbtrace_id}`; events with a `test_event_code` are also listed in
`test_events`; (event_name, event_id) pairs seen before are counted in `duplicates` (Meta keeps the first).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from bridge.sinks import checks
from bridge.sinks.base import Reject, StrictFake, strict_json

ACTION_SOURCES = {
    "email", "website", "app", "phone_call", "chat", "physical_store", "system_generated", "business_messaging",
    "other",
}  # fmt: skip
HASHED = {"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id"}
NEVER_HASHED = {
    "client_ip_address", "client_user_agent", "fbc", "fbp", "subscription_id", "fb_login_id", "lead_id",
    "anon_id", "madid", "page_id", "page_scoped_user_id", "ctwa_clid", "ig_account_id", "ig_sid",
}  # fmt: skip
FBC = re.compile(r"fb\.\d\.\d{13}\..+")
DAY = 86400


def graph_error(message: str, code: int = 100, subcode: int | None = None, status: int = 400) -> Reject:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf123"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Reject(status, message, {"error": error})


class MetaCapiFake(StrictFake):
    paths = (("/{version}/{pixel}/events", ("POST",)),)

    def __init__(self, pixel_id: str, access_token: str, *, now: Callable[[], float] = time.time) -> None:
        self.pixel_id = pixel_id
        self.access_token = access_token
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.test_events: list[dict[str, Any]] = []
        self.duplicates = 0
        self.token_in_query = False
        self._seen: set[tuple[str, str]] = set()
        super().__init__()

    def _check_event(self, event: Any, where: str, now: float) -> None:
        def bad(message: str, subcode: int | None = None) -> Reject:
            return graph_error(f"{where}: {message}", 100, subcode)

        if not isinstance(event, dict):
            raise bad("each event is an object")
        if not (isinstance(event.get("event_name"), str) and event["event_name"]):
            raise bad("event_name is required")
        stamp = event.get("event_time")
        if not checks.is_int(stamp):
            raise bad("event_time must be an integer (Unix seconds)")
        if stamp > 10**11:
            raise bad("event_time must be in seconds, not milliseconds")
        source = event.get("action_source")
        if source not in ACTION_SOURCES:
            raise bad(f"action_source must be one of {sorted(ACTION_SOURCES)}")
        window = (62 if source == "physical_store" else 7) * DAY
        if stamp < now - window:
            raise bad("event_time is too far in the past", 2804003)
        if stamp > now + 3600:
            raise bad("event_time is in the future", 2804004)
        user = event.get("user_data")
        if not isinstance(user, dict) or not user:
            raise bad("user_data needs at least one customer information parameter")
        for key, value in user.items():
            if key in HASHED:
                if not all(checks.is_hex64(v) for v in checks.strings(value)):
                    raise bad(f"user_data.{key} must be SHA-256 hex (plaintext or wrong hashing refused)")
            elif key in NEVER_HASHED:
                if not isinstance(value, str) or checks.is_hex64(value):
                    raise bad(f"user_data.{key} must be sent in clear, not hashed")
            else:
                raise bad(f"unknown user_data parameter {key}")
        if "fbc" in user and not FBC.fullmatch(user["fbc"]):
            raise bad("user_data.fbc must look like fb.1.<creation time ms>.<fbclid>")
        if "client_ip_address" in user and not checks.is_ip(user["client_ip_address"]):
            raise bad("user_data.client_ip_address is not an IP address")
        if source == "website" and not ("client_user_agent" in user and event.get("event_source_url")):
            raise bad("website events need client_user_agent and event_source_url")
        custom = event.get("custom_data", {})
        if not isinstance(custom, dict):
            raise bad("custom_data must be an object")
        if "value" in custom and not checks.is_number(custom["value"]):
            raise bad("custom_data.value must be a number")
        currency = custom.get("currency")
        if currency is not None and not (isinstance(currency, str) and re.fullmatch(r"[A-Za-z]{3}", currency)):
            raise bad("custom_data.currency must be an ISO 4217 code")
        if event["event_name"] == "Purchase" and ("value" not in custom or currency is None):
            raise bad("Purchase events need custom_data.currency and custom_data.value")
        options = event.get("data_processing_options", [])
        if not isinstance(options, list) or set(options) - {"LDU"}:
            raise bad('data_processing_options is [] or ["LDU"]')
        if "LDU" in options and (
            event.get("data_processing_options_country") not in (0, 1)
            or event.get("data_processing_options_state") not in (0, 1000)
        ):
            raise bad("LDU needs data_processing_options_country 0/1 and _state 0/1000")

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        parts = record["path"].strip("/").split("/")
        if not re.fullmatch(r"v\d+\.\d+", parts[0]):
            raise graph_error("Unknown path components", 2500, None, 400)
        content_type = record["headers"].get("content-type", "").split(";")[0].strip().lower()
        form = parse_qs(record["body"].decode("utf-8", "replace")) if content_type.endswith("urlencoded") else {}
        token = record["headers"].get("authorization", "").removeprefix("Bearer ").strip() or None
        if token is None:
            token = record["query"].get("access_token") or (form.get("access_token") or [None])[0]
            self.token_in_query = self.token_in_query or "access_token" in record["query"]
        if token != self.access_token:
            raise graph_error("Invalid OAuth access token", 190, None, 400)
        if parts[1] != self.pixel_id:
            raise graph_error("Unsupported post request: object does not exist", 100, 33)
        if form:
            try:
                document: Any = {
                    "data": strict_json(form["data"][0].encode()),
                    **{k: v[0] for k, v in form.items() if k != "data"},
                }
            except (KeyError, ValueError):
                raise graph_error("data must be a JSON array") from None
            record["json"] = document
        else:
            document = self.parse_json(record, lambda message: {"error": {"message": message, "code": 100}})
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, list) or not 1 <= len(data) <= 1000:
            raise graph_error("data must be an array of 1 to 1000 events")
        now = self.now()
        for index, event in enumerate(data):
            self._check_event(event, f"data[{index}]", now)
        for event in data:
            key = (event["event_name"], str(event.get("event_id")))
            if event.get("event_id") is not None and key in self._seen:
                self.duplicates += 1
            else:
                self._seen.add(key)
                self.events.append(event)
            if document.get("test_event_code"):
                self.test_events.append(event)
        return 200, {"events_received": len(data), "messages": [], "fbtrace_id": secrets.token_hex(8)}, {}
