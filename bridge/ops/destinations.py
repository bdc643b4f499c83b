"""Disabled destinations for ops: see them, enable them again, disable them by hand.

    GET  /ops/destinations                    every configured destination: type and `disabled` (null or
                                              {at, reason, by})
    POST /ops/destinations/{name}/enable      its held deliveries are sent (every replica is woken)
    POST /ops/destinations/{name}/disable     optional JSON {"reason": "..."}: its deliveries are held

Guarded like every /ops route (bridge/ops/api.py); an unknown name is a 404. The status page's Enable button
(bridge/ops/page.py) goes through `switch` too, so a change is logged the same way whoever makes it: a warning
when a destination is disabled, an info line when it is enabled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.outbox.base import Disabled
from bridge.state import BridgeState

log = logging.getLogger("bridge.ops")

#: the reason recorded when ops disable a destination without giving one
DEFAULT_REASON = "disabled by ops"
#: longest reason ops may give (stored, shown on the page and in /ops/outbox); a longer one is refused with 400
MAX_REASON = 500

Handler = Callable[[Request], Awaitable[Response]]


class UnknownDestination(LookupError):
    pass


def _outbox(state: BridgeState) -> Any:
    if state.outbox is None:
        raise RuntimeError("the outbox is not open yet")
    return state.outbox


def shown(disabled: Disabled | None) -> dict[str, Any] | None:
    return None if disabled is None else disabled.as_dict()


async def add_disabled(state: BridgeState, per: dict[str, dict[str, Any]]) -> None:
    """Set "disabled" (None or {at, reason, by}) on each destination of an /ops/outbox-style mapping."""
    found = await _outbox(state).disabled()
    for name, row in per.items():
        row["disabled"] = shown(found.get(name))


async def switch(state: BridgeState, name: str, *, enable: bool, reason: str | None = None) -> dict[str, Any]:
    """Enable or disable destination `name` (by ops); its new state, and whether this changed it. Wakes this
    process's dispatcher (the outbox wakes the other replicas on enable). UnknownDestination if not configured."""
    if name not in state.destinations:
        raise UnknownDestination(name)
    outbox = _outbox(state)
    if enable:
        before: Disabled | None = await outbox.enable(name)
        current = None
        changed = before is not None
        if before is not None:
            log.info(
                "destination enabled by ops; its held deliveries are sent",
                extra={"destination": name, "was_disabled_at": before.at, "was_reason": before.reason},
            )
    else:
        text = (reason or "").strip()[:MAX_REASON] or DEFAULT_REASON
        changed = await outbox.disable(name, Disabled(state.clock.now(), text, "ops"))
        current = (await outbox.disabled()).get(name)
        if changed:
            log.warning(
                "destination disabled by ops; its deliveries are held until it is enabled",
                extra={"destination": name, "reason": text, "by": "ops"},
            )
    if state.dispatcher is not None:
        state.dispatcher.hold(name, current)
    return {"destination": name, "disabled": shown(current), "changed": changed}


def routes(state: BridgeState, guarded: Callable[[Handler], Handler]) -> list[Route]:
    def answer(data: Any, status_code: int = 200) -> Response:
        return Response(orjson.dumps(data), status_code, media_type="application/json")

    async def listing(request: Request) -> Response:
        found = await _outbox(state).disabled()
        return answer(
            {
                "destinations": {
                    name: {"type": destination.type, "disabled": shown(found.get(name))}
                    for name, destination in sorted(state.destinations.items())
                }
            }
        )

    async def change(request: Request, *, enable: bool) -> Response:
        reason = None
        body = await request.body()
        if body:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ValueError('body must be JSON: {"reason": "..."}') from None
            if not isinstance(data, dict) or not isinstance(data.get("reason", ""), str | None):
                raise ValueError('body must be a JSON object: {"reason": "..."}')
            reason = data.get("reason")
            if reason is not None and (len(reason) > MAX_REASON or not reason.isprintable()):
                raise ValueError(f"reason must be printable text of at most {MAX_REASON} characters")
        try:
            return answer(await switch(state, request.path_params["name"], enable=enable, reason=reason))
        except UnknownDestination as exc:
            return answer({"error": f"no destination named {exc.args[0]!r} in the config"}, 404)

    async def enable(request: Request) -> Response:
        return await change(request, enable=True)

    async def disable(request: Request) -> Response:
        return await change(request, enable=False)

    return [
        Route("/ops/destinations", guarded(listing)),
        Route("/ops/destinations/{name}/enable", guarded(enable), methods=["POST"]),
        Route("/ops/destinations/{name}/disable", guarded(disable), methods=["POST"]),
    ]
