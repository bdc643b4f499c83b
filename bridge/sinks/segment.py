"""A strict local Segment HTTP Tracking API (spec: ECOSYSTEM_DESTINATIONS.md §3).

POST /v1/batch (and /v1/track); auth by `writeKey` in the body or `Authorization: Basic base64(writeKey:)`;
JSON only (invalid → 400). Limits: a single call ≤ 32 KB, a batch ≤ 500 KB with each message ≤ 32 KB and ≤ 2,500
messages. Each message: `type` in identify/track/page/screen/group/alias, `userId` or `anonymousId`, `track`
with a non-empty `event`, `messageId` ≤ 100 characters, `timestamp`/`sentAt` ISO 8601 with a zone.

Modes: `strict` (default) answers 400 naming the rule; `realistic` answers 200 and drops, as Segment does.
Accepted messages are in `messages`; a repeated `messageId` is answered 200 and counted in `duplicates`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from bridge.sinks import checks
from bridge.sinks.base import Reject, StrictFake

MAX_BATCH_BYTES = 500 * 1024
MAX_MESSAGE_BYTES = 32 * 1024
MAX_MESSAGES = 2500
TYPES = {"identify", "track", "page", "screen", "group", "alias"}


class SegmentFake(StrictFake):
    paths = (("/v1/batch", ("POST",)), ("/v1/track", ("POST",)))

    def __init__(self, write_key: str, *, mode: str = "strict") -> None:
        self.write_key = write_key
        self.mode = mode
        self.messages: list[dict[str, Any]] = []
        self.duplicates = 0
        self._ids: set[str] = set()
        super().__init__()

    def _problems(self, record: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
        document = self.parse_json(record, lambda message: {"success": False, "message": message})
        if not isinstance(document, dict):
            raise Reject(400, "body must be an object", {"success": False})
        header = record["headers"].get("authorization", "")
        basic = "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()
        if header != basic and document.get("writeKey") != self.write_key:
            raise Reject(401, "missing or wrong write key", {"success": False, "message": "Unauthorized"})
        batch = record["path"].endswith("/batch")
        messages = document.get("batch") if batch else [document]
        problems: list[str] = []
        size = len(record["body"])
        if not isinstance(messages, list) or not messages:
            return ["batch must be a non-empty array"], []
        if batch and size > MAX_BATCH_BYTES:
            problems.append(f"batch is {size} bytes (max 500 KB)")
        if len(messages) > MAX_MESSAGES:
            problems.append(f"{len(messages)} messages (max {MAX_MESSAGES})")
        if batch and "sentAt" in document and checks.iso_seconds(document["sentAt"]) is None:
            problems.append("sentAt is not ISO 8601 with a zone")
        for index, message in enumerate(messages):
            where = f"batch[{index}]" if batch else "body"
            if not isinstance(message, dict):
                problems.append(f"{where}: must be an object")
                continue
            if len(checks_json(message)) > MAX_MESSAGE_BYTES:
                problems.append(f"{where}: message over 32 KB")
            kind = message.get("type", "track" if not batch else None)
            if kind not in TYPES:
                problems.append(f"{where}.type must be one of {sorted(TYPES)}")
            if not (message.get("userId") or message.get("anonymousId")):
                problems.append(f"{where}: userId or anonymousId is required")
            if kind == "track" and not (isinstance(message.get("event"), str) and message["event"].strip()):
                problems.append(f"{where}.event is required for track")
            message_id = message.get("messageId")
            if message_id is not None and not (isinstance(message_id, str) and len(message_id) <= 100):
                problems.append(f"{where}.messageId must be text of at most 100 characters")
            if "timestamp" in message and checks.iso_seconds(message["timestamp"]) is None:
                problems.append(f"{where}.timestamp is not ISO 8601 with a zone")
        return problems, messages

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        problems, messages = self._problems(record)
        if problems:
            if self.mode == "realistic":
                record["dropped"] = True
                return 200, {"success": True}, {}
            raise Reject(400, "; ".join(problems), {"success": False, "message": problems[0]})
        for message in messages:
            message_id = message.get("messageId")
            if isinstance(message_id, str) and message_id in self._ids:
                self.duplicates += 1
                continue
            if isinstance(message_id, str):
                self._ids.add(message_id)
            self.messages.append(message)
        return 200, {"success": True}, {}


def checks_json(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, default=str).encode()
