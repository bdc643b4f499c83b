"""What every strict destination fake shares: request capture, scripted answers, sliding-window rate limits and
strict JSON parsing. A fake subclasses `StrictFake`, lists its routes and validates in `handle`.

Each request ends in exactly one list:
  received        accepted by the contract (method, path, query, headers (lower-case), json, body)
  rejected        answered with an error: the same keys plus `status` and `why`
  dropped_as_bot  (Zenovay) answered like a success but discarded
Scripted answers (`script(...)`) are served before any check, first in first out.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class _Scripted:
    status: int
    headers: dict[str, str]
    body: Any
    times: int


class Reject(Exception):
    """Raised inside a handler: answer `status` with `body` and record the request as rejected."""

    def __init__(self, status: int, why: str, body: Any = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(why)
        self.status = status
        self.why = why
        self.body = body
        self.headers = dict(headers or {})


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def strict_json(body: bytes) -> Any:
    """Parse JSON like a strict server: UTF-8 only, no NaN/Infinity, floats kept exact as Decimal."""
    text = body.decode("utf-8")
    return json.loads(text, parse_float=Decimal, parse_constant=_no_constants)


def is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


class StrictFake:
    #: (path, methods) served by `handle`
    paths: Sequence[tuple[str, Sequence[str]]] = ()

    def __init__(
        self,
        *,
        rate_limits: Sequence[tuple[int, float]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.received: list[dict[str, Any]] = []
        self.rejected: list[dict[str, Any]] = []
        self.dropped_as_bot: list[dict[str, Any]] = []
        self.rate_limits = tuple(rate_limits)
        self.clock = clock
        self._hits: deque[float] = deque()
        self._script: deque[_Scripted] = deque()
        self.app = Starlette(
            routes=[Route(path, self._endpoint, methods=list(methods)) for path, methods in self.paths]
        )

    # -- test controls ---------------------------------------------------------------------------------

    def script(
        self, status: int, *, headers: Mapping[str, str] | None = None, body: Any = None, times: int = 1
    ) -> None:
        """Answer the next `times` requests with `status` (and `headers`, `body`: bytes, str or JSON)."""
        self._script.append(_Scripted(status, dict(headers or {}), body, times))

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request seen, accepted or not, in arrival order."""
        return sorted(self.received + self.rejected + self.dropped_as_bot, key=lambda r: r["seq"])

    # -- machinery -------------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        body = await request.body()
        record: dict[str, Any] = {
            "seq": len(self.received) + len(self.rejected) + len(self.dropped_as_bot),
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            "json": None,
            "at": self.clock(),
        }
        if self._script:
            scripted = self._script[0]
            scripted.times -= 1
            if scripted.times <= 0:
                self._script.popleft()
            target = self.received if 200 <= scripted.status < 300 else self.rejected
            target.append({**record, "status": scripted.status, "why": "scripted"})
            return _response(scripted.status, scripted.body, scripted.headers)
        try:
            self._check_rate(record)
            status, answer, headers = await self.handle(record)
        except Reject as reject:
            self.rejected.append({**record, "status": reject.status, "why": reject.why})
            return _response(reject.status, reject.body, reject.headers)
        if record.get("dropped"):
            self.dropped_as_bot.append({**record, "status": status})
        else:
            self.received.append({**record, "status": status})
        return _response(status, answer, headers)

    def _check_rate(self, record: dict[str, Any]) -> None:
        if not self.rate_limits:
            return
        now = self.clock()
        longest = max(per for _, per in self.rate_limits)
        while self._hits and self._hits[0] <= now - longest:
            self._hits.popleft()
        for requests, per in self.rate_limits:
            in_window = [t for t in self._hits if t > now - per]
            if len(in_window) >= requests:
                retry_after = max(1, int(in_window[0] + per - now + 0.999))
                raise Reject(
                    429,
                    f"rate limited: {requests} per {per:g} s",
                    self.rate_limited_body(retry_after),
                    {"Retry-After": str(retry_after)},
                )
        self._hits.append(now)

    def rate_limited_body(self, retry_after: int) -> Any:
        return {"error": "rate limit exceeded", "retry_after": retry_after}

    def parse_json(self, record: dict[str, Any], error: Callable[[str], Any]) -> Any:
        """The strict JSON body (also stored in record['json']); 400 if it is not JSON."""
        content_type = record["headers"].get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise Reject(400, f"content-type is {content_type!r}, not application/json", error("expected JSON"))
        try:
            document = strict_json(record["body"])
        except (UnicodeDecodeError, ValueError) as exc:
            raise Reject(400, f"body is not JSON: {exc}", error("invalid JSON")) from None
        record["json"] = document
        return document

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        """Validate one request; return (status, body, headers) or raise Reject. Set record['dropped']=True
        to file the request under dropped_as_bot."""
        raise NotImplementedError


def _response(status: int, body: Any, headers: Mapping[str, str]) -> Response:
    if body is None:
        return Response(status_code=status, headers=dict(headers))
    if isinstance(body, bytes | str):
        return Response(content=body, status_code=status, headers=dict(headers))
    return JSONResponse(body, status_code=status, headers=dict(headers))
