"""A strict local Servoki server-events endpoint (seed: servoki-server-events.txt).

POST /api/events/server with `authorization: Bearer <key>` (401 otherwise) and a JSON body: `site` a known domain
or numeric code (404 otherwise), `event_type` required, `value` a number, `currency` a 3-letter code, `event_id`
text, `occurred_at` ISO 8601, `props` an object of scalars, `consent` a boolean, `vid` text; no other fields.
202 on success; repeats of an `event_id` count once (`counted` holds the distinct events). 600 req/min per IP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from bridge.sinks.base import Reject, StrictFake, is_number, is_text

PATH = "/api/events/server"
FIELDS = {"site", "event_type", "vid", "value", "currency", "event_id", "occurred_at", "props", "consent"}


def _error(message: str) -> dict[str, Any]:
    return {"error": message}


class ServokiFake(StrictFake):
    paths = ((PATH, ("POST",)),)

    def __init__(
        self,
        api_key: str,
        sites: Iterable[str],
        *,
        rate_limit: tuple[int, float] = (600, 60.0),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.api_key = api_key
        self.sites = set(sites)
        self.counted: dict[str, dict[str, Any]] = {}
        super().__init__(rate_limits=[rate_limit], **({"clock": clock} if clock else {}))

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        if record["headers"].get("authorization") != f"Bearer {self.api_key}":
            raise Reject(401, "missing or invalid API key", _error("invalid API key"))
        event = self.parse_json(record, _error)

        def bad(message: str) -> Reject:
            return Reject(400, message, _error(message))

        if not isinstance(event, dict):
            raise bad("body must be an object")
        unknown = set(event) - FIELDS
        if unknown:
            raise bad(f"unknown field(s) {sorted(unknown)}")
        site = event.get("site")
        if not (is_text(site) or (isinstance(site, int) and not isinstance(site, bool))):
            raise bad("site is required")
        if not is_text(event.get("event_type")):
            raise bad("missing event_type")
        if "value" in event and not is_number(event["value"]):
            raise bad("value must be a number")
        if "currency" in event and not (
            isinstance(event["currency"], str) and re.fullmatch(r"[A-Z]{3}", event["currency"])
        ):
            raise bad(f"bad currency {event['currency']!r}")
        for key in ("event_id", "vid"):
            if key in event and not is_text(event[key]):
                raise bad(f"{key} must be a non-empty string")
        if "occurred_at" in event:
            try:
                datetime.fromisoformat(str(event["occurred_at"]).replace("Z", "+00:00"))
            except ValueError:
                raise bad("occurred_at must be ISO 8601") from None
        props = event.get("props", {})
        if not isinstance(props, dict) or any(isinstance(v, dict | list) or v is None for v in props.values()):
            raise bad("props must be an object of scalar values")
        if "consent" in event and not isinstance(event["consent"], bool):
            raise bad("consent must be a boolean")
        if str(site) not in self.sites:
            raise Reject(404, f"unknown site {site!r}", _error("unknown site"))
        key = str(event.get("event_id") or f"_anon{record['seq']}")
        duplicate = key in self.counted
        self.counted.setdefault(key, event)
        return 202, {"accepted": True, "duplicate": duplicate}, {}
