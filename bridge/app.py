"""`create_app(settings)`: the HTTP surface and the lifespan that owns the outbox, the outbound session and the
dispatcher. Business rules live in ingest.py, dispatcher.py and the provider/destination/mapping modules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.middleware import Middleware

from bridge import ops
from bridge.clock import Clock, SystemClock
from bridge.config import Settings
from bridge.destinations import destination_class
from bridge.destinations.base import Destination
from bridge.dispatcher import Dispatcher, new_session
from bridge.maintenance import Maintenance
from bridge.mapping import MappingSet, load_mappings
from bridge.outbox import open_outbox
from bridge.outbox.base import Outbox
from bridge.providers import provider_class
from bridge.providers.base import Provider
from bridge.reload import MappingReloader
from bridge.state import ROLES, BridgeState
from bridge.webhooks import WebhookFront

log = logging.getLogger("bridge.http")


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
    role: str = "all",
) -> Starlette:
    """The bridge as an ASGI app. Everything with I/O or time can be passed in (tests, the demo); what is not
    passed is built from `settings` when the app starts. `role` (ROLES): "all" takes webhooks and delivers,
    "ingest" takes webhooks only (no dispatcher, no background upkeep), "dispatch" delivers only (its webhook
    route answers 503, so a misrouted provider retries elsewhere); `dispatch=False` also leaves the dispatcher
    out. `reload_interval`: how often (seconds) the mappings directory is checked for edits; None: only on
    SIGHUP."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    dispatch = dispatch and role != "ingest"
    state = BridgeState(
        settings=settings,
        clock=clock or SystemClock(),
        providers={**build_providers(settings), **(providers or {})},
        destinations=build_destinations(settings),
        mappings=mappings,
        role=role,
    )
    for destination in state.destinations.values():
        destination.clock = state.clock  # age limits and send times read the app's clock

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
        timeouts = settings.outbox_timeouts
        state.outbox = outbox or open_outbox(
            settings.outbox_url, acquire_timeout=timeouts.acquire_seconds, statement_timeout=timeouts.statement_seconds
        )
        await state.outbox.open()
        if role != "all" and settings.outbox_url.startswith("sqlite:"):
            log.warning(
                "a SQLite outbox belongs to one process: with role %s nothing else can %s; use PostgreSQL for "
                "separate ingest and dispatch replicas",
                role,
                "deliver" if role == "ingest" else "take webhooks",
            )
        app.state.maintenance = maintenance = Maintenance(state.outbox, state.clock, settings.retention)
        if role != "ingest":  # the purge is upkeep; ingest replicas keep to the hot path
            maintenance.start()
        own_session = session is None
        http = session or new_session()
        if dispatch:
            state.dispatcher = Dispatcher(state.outbox, state.destinations, http, state.clock, settings.dispatcher)
            state.dispatcher.on_request = state.metrics.request
            await state.dispatcher.start()
        log.info(
            "bridge started",
            extra={"role": role, "sources": sorted(state.providers), "destinations": sorted(state.destinations)},
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
            await maintenance.stop()
            if own_session:
                await http.close()
            await state.outbox.close()
            log.info("bridge stopped")

    # POST /webhooks/{source} is served by a plain ASGI handler in front of Starlette's routing (the hot path:
    # measured ~30 % of the loop's time went to the framework around the handler); everything else is routed.
    app = Starlette(routes=ops.routes(state), lifespan=lifespan, middleware=[Middleware(WebhookFront, state=state)])
    app.state.bridge = state
    return app
