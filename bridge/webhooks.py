"""POST /webhooks/{source}: read the raw body (bounded), verify, parse, map and store, then acknowledge.

Served as plain ASGI by `WebhookFront`, which sits in front of Starlette's router: the ingest path builds no
Request or Response objects and runs no route matching or exception wrapping. Another method on a configured
source's URL is answered here too (`other_method`: a GET the provider serves, such as Braintree's URL
challenge, else 405). Every other path goes on to the Starlette app (ops, health, metrics, and a 404 for
anything else, an unknown source included).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge import logs
from bridge.errors import OutboxError, PayloadError, SignatureError
from bridge.ingest import store
from bridge.limits import check_body, check_event_count
from bridge.providers.base import Provider
from bridge.providers.params import request_headers
from bridge.state import BridgeState

log = logging.getLogger("bridge.http")

_PREFIX = "/webhooks/"
_JSON = [(b"content-type", b"application/json")]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class BodyTimeout(Exception):
    pass


class BodyDeadlines:
    """Deadlines for the body reads in progress, enforced by one timer for all of them.

    A timer per request (asyncio.timeout, or a loop.call_later handle) measured 4–10 µs per request under
    uvloop; registering in a dict costs a fraction of that, and the single timer is re-armed for the earliest
    deadline only while reads are pending. A read past its deadline is cancelled and raises BodyTimeout.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._pending: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def read(self, receive: Receive, declared: str | None, limit: int) -> bytes:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        self._pending[task] = loop.time() + self.seconds
        if self._timer is None:
            self._timer = loop.call_later(self.seconds, self._sweep)
        try:
            return await read_body(receive, declared, limit)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            task.uncancel()
            raise BodyTimeout from None
        finally:
            self._pending.pop(task, None)
            self._expired.discard(task)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, deadline in list(self._pending.items()):
            if deadline <= now:
                del self._pending[task]
                self._expired.add(task)
                task.cancel()
        earliest = min(self._pending.values(), default=None)
        self._timer = None if earliest is None else loop.call_later(max(earliest - now, 0.0), self._sweep)


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The raw body, refusing (without reading the rest) once it passes `limit` bytes."""
    if declared is not None and declared.isascii() and declared.isdigit():
        significant = declared.lstrip("0")
        if len(significant) > 19 or int(significant or "0") > limit:  # (int() of a huge text would raise)
            raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _error(status: int, message: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return status, orjson.dumps({"error": message}), _JSON


#: Close the connection after answering: the client is not sending its body (408), or what it still sends is too
#: much or of unknown length (a 413 for a chunked or very large body) to be worth reading to its end.
_CLOSE = (b"connection", b"close")
#: A refused body of at most this declared length is left open: the HTTP server reads the rest and throws it away
#: (the parser knows where the body ends), so a client still writing it reads its 413. Closing a socket with unread
#: data makes the kernel send a reset, which destroys the answer before such a client has read it.
DRAIN_BYTES = 8 * 1024 * 1024


def _drainable(declared: str | None) -> bool:
    return (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and len(declared) <= 12
        and (int(declared) <= DRAIN_BYTES)
    )


async def handle(
    state: BridgeState, source: str, scope: Scope, receive: Receive, deadlines: BodyDeadlines
) -> tuple[int, bytes, list[Any]]:
    """(status, body, headers) for one webhook request; its handling time is observed per configured source
    (an unknown source name is never a label: strangers choose it)."""
    started = time.perf_counter()
    if not state.takes_webhooks:  # a dispatch-only replica: the provider retries, reaching an ingest one
        status, payload, extra = _error(503, "this replica does not take webhooks (role dispatch)")
        return status, payload, [*extra, (b"retry-after", b"5")]
    if source not in state.providers:
        return _error(404, f"unknown source {source!r}")
    with logs.bound(source=source):
        try:
            return await _handle(state, source, scope, receive, started, deadlines)
        finally:
            state.metrics.webhook_handled(source, time.perf_counter() - started)


async def _handle(
    state: BridgeState, source: str, scope: Scope, receive: Receive, started: float, deadlines: BodyDeadlines
) -> tuple[int, bytes, list[Any]]:
    provider = state.providers[source]
    headers = request_headers(scope["headers"])  # a repeated header becomes one joined value, never one copy
    metrics = state.metrics
    settings = state.settings
    try:
        body = await deadlines.read(receive, headers.get("content-length"), provider.settings.max_body_bytes)
    except BodyTooLarge:
        metrics.rejected(source, "too_large")
        status, payload, extra = _error(413, f"body larger than {provider.settings.max_body_bytes} bytes")
        return status, payload, extra if _drainable(headers.get("content-length")) else [*extra, _CLOSE]
    except BodyTimeout:
        metrics.rejected(source, "timeout")
        status, payload, extra = _error(408, f"body not received within {settings.body_timeout_seconds:g} s")
        return status, payload, [*extra, _CLOSE]
    now = state.clock.now()
    try:
        await provider.verify(body, headers, now)
    except SignatureError as exc:
        metrics.rejected(source, "signature")
        log.warning("signature rejected", extra={"source": source, "reason": str(exc)})
        return _error(401, "signature verification failed")  # the reason is logged, never returned
    try:
        check_body(body, settings.limits)
        inbound = provider.parse(body, headers)
        check_event_count(len(inbound), settings.limits)
    except PayloadError as exc:
        metrics.rejected(source, "malformed")
        return _error(400, str(exc))
    if state.outbox is None:
        return _error(503, "starting up, retry later")
    mappings = state.mappings
    try:
        outcome = await store(
            state.outbox,
            source=source,
            provider=provider,
            mapping=mappings.get(provider.mapping_name) if mappings else None,
            destinations=state.destinations,
            inbound=inbound,
            body=body,
            headers=headers,
            received_at=now,
            limits=settings.limits,
        )
    except OutboxError as exc:
        metrics.rejected(source, "unavailable")
        log.error("storage unavailable", extra={"source": source, "error": str(exc)})
        status, payload, extra = _error(503, "storage unavailable, retry later")
        return status, payload, [*extra, (b"retry-after", b"5")]
    for status_word, result in zip(outcome.statuses, outcome.results, strict=True):
        metrics.webhook(source, "duplicate" if result.duplicate else status_word)
    if outcome.deliveries_created and state.dispatcher is not None:
        state.dispatcher.wake()
    if log.isEnabledFor(logging.INFO):
        log.info(
            "webhook",
            extra={
                "source": source,
                "webhook_ids": [r.webhook_id for r in outcome.results],
                "ack": outcome.status,
                "events": [e.event_type for e in inbound],
                "deliveries": outcome.deliveries_created,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
    ack = provider.acknowledge(outcome.status, [r.webhook_id for r in outcome.results])
    return ack.status_code, ack.body, [(b"content-type", ack.media_type.encode("latin-1"))]


def other_method(provider: Provider, source: str, scope: Scope) -> tuple[int, bytes, list[Any]]:
    """(status, body, headers) for a request other than POST to a configured source: the provider's answer to a
    GET where it has one (`Provider.answer_get`), else 405 naming the methods the URL takes."""
    method = scope["method"]
    if method == "GET":
        ack = provider.answer_get(scope.get("query_string", b""))
        if ack is not None:
            log.info("GET answered", extra={"source": source, "status": ack.status_code})
            return ack.status_code, ack.body, [(b"content-type", ack.media_type.encode("latin-1"))]
    allow = "GET, POST" if type(provider).answer_get is not Provider.answer_get else "POST"
    status, body, headers = _error(405, f"{method[:16]} is not allowed here: {allow}")
    return status, body, [*headers, (b"allow", allow.encode())]


class WebhookFront:
    """ASGI middleware answering /webhooks/{source} of a configured source itself (POST, and `other_method` for
    the rest); everything else goes to `app`."""

    def __init__(self, app: ASGIApp, state: BridgeState) -> None:
        self.app = app
        self.state = state
        self.deadlines = BodyDeadlines(state.settings.body_timeout_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        source = path[len(_PREFIX) :] if path.startswith(_PREFIX) else ""
        if not source or "/" in source or scope["method"] != "POST":
            provider = self.state.providers.get(source) if source and "/" not in source else None
            if provider is None:
                await self.app(scope, receive, send)
                return
            status, body, headers = other_method(provider, source, scope)
        else:
            try:
                status, body, headers = await handle(self.state, source, scope, receive, self.deadlines)
            except ClientGone:
                return
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
