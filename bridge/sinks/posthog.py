"""A strict local PostHog capture endpoint (spec: ECOSYSTEM_DESTINATIONS.md §4).

POST /batch/ (also /i/v0/e/ and /capture/ for single events), JSON with the project `api_key` in the body
(unknown → 401). Body < 20 MB, each event < 1 MB, batch non-empty. Each event: a non-empty `event`, a non-empty
`distinct_id` (top level or in properties) that is not a placeholder (null, undefined, guest, …), a `uuid`
that is a valid UUID when present, `timestamp` ISO 8601 not more than 23 h ahead.

Modes: `strict` (default) answers 400 naming the rule; `realistic` answers 200 `{"status": 1}` and drops the
bad events, as PostHog does. Accepted events are in `events`; a repeat of (uuid, event, timestamp,
distinct_id) is counted in `duplicates`, as PostHog's deduplication would merge it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.sinks import checks
from bridge.sinks.base import Reject, StrictFake

MAX_BODY = 20 * 1024 * 1024
MAX_EVENT = 1024 * 1024
PLACEHOLDERS = {"null", "undefined", "guest", "anonymous", "none", "nil", "0", "[object object]", "distinct_id"}


class PostHogFake(StrictFake):
    paths = (("/batch/", ("POST",)), ("/i/v0/e/", ("POST",)), ("/capture/", ("POST",)))

    def __init__(self, api_key: str, *, mode: str = "strict", now: Callable[[], float] = time.time) -> None:
        self.api_key = api_key
        self.mode = mode
        self.now = now
        self.events: list[dict[str, Any]] = []
        self.duplicates = 0
        self._seen: set[tuple[Any, ...]] = set()
        super().__init__()

    def _event_problem(self, event: Any, where: str) -> str | None:
        if not isinstance(event, dict):
            return f"{where}: must be an object"
        if len(json.dumps(event, default=str)) >= MAX_EVENT:
            return f"{where}: event of 1 MB or more"
        if not (isinstance(event.get("event"), str) and event["event"].strip()):
            return f"{where}.event is required"
        properties = event.get("properties", {})
        if not isinstance(properties, dict):
            return f"{where}.properties must be an object"
        distinct = event.get("distinct_id", properties.get("distinct_id"))
        if not (isinstance(distinct, str | int) and str(distinct).strip()) or str(distinct).lower() in PLACEHOLDERS:
            return f"{where}: distinct_id is missing, empty or a placeholder"
        if "uuid" in event and not (isinstance(event["uuid"], str) and checks.UUID.fullmatch(event["uuid"])):
            return f"{where}.uuid is not a valid UUID"
        if "timestamp" in event:
            moment = checks.iso_seconds(event["timestamp"])
            if moment is None:
                return f"{where}.timestamp is not ISO 8601 with a zone"
            if moment > self.now() + 23 * 3600:
                return f"{where}.timestamp is more than 23 h in the future"
        return None

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        if len(record["body"]) >= MAX_BODY:
            raise Reject(413, "body of 20 MB or more", {"type": "validation_error", "code": "payload_too_large"})
        document = self.parse_json(record, lambda message: {"type": "validation_error", "detail": message})
        if not isinstance(document, dict):
            raise Reject(400, "body must be an object", {"type": "validation_error"})
        batch = document.get("batch") if record["path"] == "/batch/" else [document]
        keys = {document.get("api_key")} | {
            e.get("api_key") for e in batch or [] if isinstance(e, dict) and "api_key" in e
        }
        if keys != {self.api_key}:
            raise Reject(401, "api_key missing, unknown or mixed", {"type": "authentication_error"})
        if not isinstance(batch, list) or not batch:
            raise Reject(400, "empty batch", {"type": "validation_error", "detail": "empty batch"})
        problems = [p for i, e in enumerate(batch) if (p := self._event_problem(e, f"batch[{i}]"))]
        if problems and self.mode != "realistic":
            raise Reject(400, "; ".join(problems), {"type": "validation_error", "detail": problems[0]})
        for event in batch:
            if self._event_problem(event, "") is not None:
                record["dropped"] = True
                continue
            properties = event.get("properties", {})
            key = (
                event.get("uuid"),
                event["event"],
                event.get("timestamp"),
                event.get("distinct_id", properties.get("distinct_id")),
            )
            if event.get("uuid") and key in self._seen:
                self.duplicates += 1
                continue
            self._seen.add(key)
            self.events.append(event)
        return 200, {"status": 1}, {}
