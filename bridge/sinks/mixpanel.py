"""A strict local Mixpanel `/import` endpoint (spec: ECOSYSTEM_DESTINATIONS.md §5).

POST /import with Basic auth: the project API secret as user name (empty password), or a service account
`user:secret` with `?project_id=`; wrong → 401. Body a JSON array or NDJSON, ≤ 2,000 events, ≤ 10 MB (413).
Each event: a name; `properties.time` an integer of 10 or 13 digits between 1971 and now + 1 h;
`distinct_id` present and not a blocklisted placeholder (the empty string is allowed: "not a user");
`$insert_id` matching `[A-Za-z0-9-]{1,36}`; `token`, when present, the project token; < 255 properties,
nesting ≤ 3 levels, arrays < 255 items; each event < 1 MB.

With `strict=1` invalid events are answered 400 with `failed_records` and `num_records_imported`, **and the
valid ones are stored** (Mixpanel's partial ingestion); without it they are silently dropped. Stored events
are in `events`; a repeat of (event, distinct_id, time, $insert_id) counts in `duplicates`.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.sinks import checks
from bridge.sinks.base import Reject, StrictFake, strict_json

MAX_BODY = 10 * 1024 * 1024
MAX_EVENTS = 2000
MAX_EVENT = 1024 * 1024
INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
BLOCKED_IDS = {
    "00000000-0000-0000-0000-000000000000", "anon", "anonymous", "nil", "none", "null", "n/a", "na",
    "undefined", "unknown", "<nil>", "0", "-1", "true", "false", "[]", "{}",
}  # fmt: skip
YEAR_1971 = 31_536_000


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


class MixpanelFake(StrictFake):
    paths = (("/import", ("POST",)),)

    def __init__(
        self,
        project_token: str,
        api_secret: str,
        *,
        service_account: str | None = None,
        project_id: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.project_token = project_token
        self.api_secret = api_secret
        self.service_account = service_account
        self.project_id = project_id
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.duplicates = 0
        self._seen: set[tuple[Any, ...]] = set()
        super().__init__()

    def _authorized(self, record: dict[str, Any]) -> bool:
        header = record["headers"].get("authorization", "")
        legacy = "Basic " + base64.b64encode(f"{self.api_secret}:".encode()).decode()
        if header == legacy:
            return True
        if self.service_account:
            account = "Basic " + base64.b64encode(f"{self.service_account}:{self.api_secret}".encode()).decode()
            return bool(header == account and record["query"].get("project_id") == self.project_id)
        return False

    def _problem(self, event: Any, now: float) -> tuple[str, str] | None:
        """(field, message) of the first rule `event` breaks, or None."""
        if not isinstance(event, dict) or not (isinstance(event.get("event"), str) and event["event"]):
            return "event", "event name is required"
        props = event.get("properties")
        if not isinstance(props, dict):
            return "properties", "properties must be an object"
        if len(json.dumps(event, default=str)) >= MAX_EVENT:
            return "event", "event of 1 MB or more"
        stamp = props.get("time")
        if not checks.is_int(stamp) or len(str(stamp)) not in (10, 13):
            return "properties.time", "time must be an integer in seconds or milliseconds"
        seconds = stamp / 1000 if len(str(stamp)) == 13 else stamp
        if seconds < YEAR_1971 or seconds > now + 3600:
            return "properties.time", "time must be after 1971 and at most 1 hour in the future"
        if "distinct_id" not in props:
            return "properties.distinct_id", "distinct_id is required"
        distinct = props["distinct_id"]
        if not isinstance(distinct, str | int) or str(distinct).lower() in BLOCKED_IDS:
            return "properties.distinct_id", "distinct_id is a blocklisted placeholder"
        insert_id = props.get("$insert_id")
        if not (isinstance(insert_id, str) and INSERT_ID.fullmatch(insert_id)):
            return "properties.$insert_id", "$insert_id must be 1-36 characters of [A-Za-z0-9-]"
        if "token" in props and props["token"] != self.project_token:
            return "properties.token", "token is not this project's"
        if len(props) >= 255:
            return "properties", "255 properties or more"
        if _depth(props) > 3:
            return "properties", "nested more than 3 levels"
        for key, value in props.items():
            if isinstance(value, list) and len(value) >= 255:
                return f"properties.{key}", "arrays take fewer than 255 items"
        return None

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        if not self._authorized(record):
            raise Reject(401, "bad credentials", {"code": 401, "error": "Invalid credentials", "status": 0})
        if len(record["body"]) > MAX_BODY:
            raise Reject(413, "body over 10 MB", {"code": 413, "error": "request too large", "status": 0})
        content_type = record["headers"].get("content-type", "").split(";")[0].strip().lower()
        try:
            if content_type == "application/x-ndjson":
                lines = record["body"].decode("utf-8").splitlines()
                events: Any = [strict_json(line.encode()) for line in lines if line.strip()]
            elif content_type == "application/json":
                events = strict_json(record["body"])
            else:
                raise ValueError(f"content-type {content_type!r}")
        except (UnicodeDecodeError, ValueError) as exc:
            raise Reject(400, f"not JSON: {exc}", {"code": 400, "error": "invalid JSON", "status": 0}) from None
        record["json"] = events
        if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
            raise Reject(400, "1 to 2000 events", {"code": 400, "error": "events must be an array", "status": 0})
        now = self.now()
        failed = []
        for index, event in enumerate(events):
            problem = self._problem(event, now)
            if problem is not None:
                insert_id = event.get("properties", {}).get("$insert_id") if isinstance(event, dict) else None
                failed.append({"index": index, "$insert_id": insert_id, "field": problem[0], "message": problem[1]})
                continue
            props = event["properties"]
            key = (event["event"], props["distinct_id"], props["time"], props["$insert_id"])
            if key in self._seen:
                self.duplicates += 1
                continue
            self._seen.add(key)
            self.events.append(event)
        imported = len(events) - len(failed)
        if failed and record["query"].get("strict") == "1":
            record["failed_records"] = failed
            body = {
                "code": 400,
                "error": "some data points in the request failed validation",
                "failed_records": failed,
                "num_records_imported": imported,
                "status": "Bad Request",
            }
            return 400, body, {}
        return 200, {"code": 200, "num_records_imported": imported, "status": "OK"}, {}
