"""A strict local Zenovay ingest endpoint (seed: zenovay-server-side-tracking.txt).

POST /e/{trackingCode} (unknown code: 404), public (no auth), JSON. Required: `session_id` (≥ 8 chars), a full
http(s) `url`, `device_type`, `browser`, `os`, `user_agent`; a 400 lists what is missing. `event_type` is
absent/pageview or custom (then `event_name` is required, `properties` an object); `visitor_id` ≥ 8 chars.
A bot-like agent (in the body or the User-Agent header) is answered like a success and dropped: the request
lands in `dropped_as_bot`, not `received`. Limits per IP: 60 per 10 s and 5000 per hour (429 + Retry-After).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from bridge.sinks.base import Reject, StrictFake, is_text

REQUIRED = ("session_id", "url", "device_type", "browser", "os", "user_agent")
# The doc's isBot() list plus what the brief names (HTTP libraries).
BOT = re.compile(
    r"bot|crawler|spider|scraper|curl|wget|python|java/|googlebot|bingbot|yandex|go-http|aiohttp|httpx", re.I
)


class ZenovayFake(StrictFake):
    paths = (("/e/{code}", ("POST",)),)

    def __init__(
        self,
        tracking_code: str,
        *,
        rate_limits: tuple[tuple[int, float], ...] = ((60, 10.0), (5000, 3600.0)),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.tracking_code = tracking_code
        super().__init__(rate_limits=rate_limits, **({"clock": clock} if clock else {}))

    def rate_limited_body(self, retry_after: int) -> Any:
        return {"error": {"message": "Too many requests", "code": "rate_limit_exceeded", "retry_after": retry_after}}

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        if record["path"] != f"/e/{self.tracking_code}":
            raise Reject(404, "unknown tracking code", {"error": "Website not found"})

        def error(message: str) -> Any:
            return {"error": message}

        event = self.parse_json(record, error)
        if not isinstance(event, dict):
            raise Reject(400, "body must be an object", error("Invalid payload"))
        missing = [key for key in REQUIRED if not is_text(event.get(key))]
        if missing:
            raise Reject(400, f"missing {missing}", {"error": "Missing required fields", "missing": missing})
        problems = []
        if len(event["session_id"]) < 8:
            problems.append("session_id must be at least 8 characters")
        parts = urlsplit(event["url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append("url must be a full, valid URL")
        if "visitor_id" in event and not (isinstance(event["visitor_id"], str) and len(event["visitor_id"]) >= 8):
            problems.append("visitor_id must be at least 8 characters")
        kind = event.get("event_type", "pageview")
        if kind not in ("pageview", "custom"):
            problems.append("event_type must be pageview or custom")
        if kind == "custom" and not is_text(event.get("event_name")):
            problems.append("event_name is required for custom events")
        if "properties" in event and not isinstance(event["properties"], dict):
            problems.append("properties must be an object")
        if problems:
            raise Reject(400, "; ".join(problems), {"error": "Invalid payload", "details": problems})
        header_agent = record["headers"].get("user-agent", "")
        if BOT.search(event["user_agent"]) or not header_agent or BOT.search(header_agent):
            record["dropped"] = True
        return 200, {"success": True}, {}
