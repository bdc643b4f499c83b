"""`create_app(settings)`: the HTTP surface and the lifespan that owns the outbox, the outbound session and the
dispatcher. Business rules live in ingest.py, dispatcher.py and the provider/destination/mapping modules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge import ops
from bridge.clock import Clock, SystemClock
from bridge.config import Settings
from bridge.destinations import destination_class
from bridge.destinations.base import Destination
from bridge.dispatcher import Dispatcher, new_session
from bridge.errors import OutboxError, PayloadError, SignatureError
from bridge.ingest import store
from bridge.mapping import MappingSet, load_mappings
from bridge.metrics import Metrics
from bridge.outbox import open_outbox
from bridge.outbox.base import Outbox
from bridge.providers import provider_class
from bridge.providers.base import Provider
from bridge.reload import MappingReloader

log = logging.getLogger("bridge.http")


def json_response(data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code, headers=dict(headers or {}), media_type="application/json")


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (without reading the rest) once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class BridgeState:
    """Everything the routes need; built by create_app, filled in by the lifespan."""

    settings: Settings
    clock: Clock
    providers: dict[str, Provider]
    destinations: dict[str, Destination]
    mappings: MappingSet | None = None
    outbox: Outbox | None = None
    dispatcher: Dispatcher | None = None
    reloader: MappingReloader | None = None
    metrics: Metrics = field(default_factory=Metrics)


def build_providers(settings: Settings) -> dict[str, Provider]:
    return {name: provider_class(src.provider)(src) for name, src in settings.sources.items()}


def build_destinations(settings: Settings) -> dict[str, Destination]:
    return {name: destination_class(d.type)(d) for name, d in settings.destinations.items()}


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    outbox: Outbox | None = None,
    providers: Mapping[str, Provider] | None = None,
    mappings: MappingSet | None = None,
    session: aiohttp.ClientSession | None = None,
    dispatch: bool = True,
    reload_interval: float | None = 1.0,
) -> Starlette:
    """The bridge as an ASGI app. Everything with I/O or time can be passed in (tests, the demo); what is not
    passed is built from `settings` when the app starts. `dispatch=False` runs ingest and ops only.
    `reload_interval`: how often (seconds) the mappings directory is checked for edits; None: only on SIGHUP."""
    state = BridgeState(
        settings=settings,
        clock=clock or SystemClock(),
        providers={**build_providers(settings), **(providers or {})},
        destinations=build_destinations(settings),
        mappings=mappings,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.mappings = state.mappings or load_mappings(settings.mappings_dir)

        def swap(mappings: MappingSet) -> None:
            state.mappings = mappings  # one assignment: requests see the old set or the new one, never a mix

        state.reloader = MappingReloader(
            settings.mappings_dir, state.mappings, {s.mapping for s in settings.sources.values()}, swap
        )
        watcher = asyncio.create_task(state.reloader.watch(reload_interval)) if reload_interval else None
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, state.reloader.reload)
        state.outbox = outbox or open_outbox(settings.outbox_url)
        await state.outbox.open()
        own_session = session is None
        http = session or new_session()
        if dispatch:
            state.dispatcher = Dispatcher(state.outbox, state.destinations, http, state.clock, settings.dispatcher)
            await state.dispatcher.start()
        log.info(
            "bridge started", extra={"sources": sorted(state.providers), "destinations": sorted(state.destinations)}
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            if state.dispatcher is not None:
                await state.dispatcher.stop()
            if own_session:
                await http.close()
            await state.outbox.close()
            log.info("bridge stopped")

    async def webhook(request: Request) -> Response:
        return await receive_webhook(state, request)

    routes = [
        Route("/webhooks/{source}", webhook, methods=["POST"]),
        *ops.routes(state),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.bridge = state
    return app


async def receive_webhook(state: BridgeState, request: Request) -> Response:
    started = time.perf_counter()
    source = request.path_params["source"]
    provider = state.providers.get(source)
    if provider is None:
        return json_response({"error": f"unknown source {source!r}"}, 404)
    metrics = state.metrics
    try:
        body = await read_body(request, provider.settings.max_body_bytes)
    except BodyTooLarge:
        metrics.rejected(source, "too_large")
        return json_response({"error": f"body larger than {provider.settings.max_body_bytes} bytes"}, 413)
    headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in request.scope["headers"]}
    now = state.clock.now()
    try:
        await provider.verify(body, headers, now)
    except SignatureError as exc:
        metrics.rejected(source, "signature")
        log.warning("signature rejected", extra={"source": source, "reason": str(exc)})
        return json_response({"error": "signature verification failed"}, 401)
    try:
        inbound = provider.parse(body, headers)
    except PayloadError as exc:
        metrics.rejected(source, "malformed")
        return json_response({"error": str(exc)}, 400)
    assert state.outbox is not None, "the lifespan opens the outbox before requests are served"
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
        )
    except OutboxError as exc:
        metrics.rejected(source, "unavailable")
        log.error("storage unavailable", extra={"source": source, "error": str(exc)})
        return json_response({"error": "storage unavailable, retry later"}, 503, {"Retry-After": "5"})
    for status, result in zip(outcome.statuses, outcome.results, strict=True):
        metrics.webhook(source, "duplicate" if result.duplicate else status)
    if outcome.deliveries_created and state.dispatcher is not None:
        state.dispatcher.wake()
    log.info(
        "webhook",
        extra={
            "source": source,
            "ack": outcome.status,
            "events": [e.event_type for e in inbound],
            "deliveries": outcome.deliveries_created,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )
    ack = provider.acknowledge(outcome.status, [r.webhook_id for r in outcome.results])
    return Response(ack.body, ack.status_code, media_type=ack.media_type)
