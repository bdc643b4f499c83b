"""Operations endpoints: health, readiness, metrics, and the outbox behind a Bearer token.

No token configured → every /ops route answers 403 (the API is off, not open). Tokens are compared in
constant time. Nothing here writes outside the outbox contract.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bridge.errors import OutboxError
from bridge.outbox.base import DELIVERY_STATUSES

if TYPE_CHECKING:
    from bridge.app import BridgeState

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status_code, media_type="application/json")


def _error(message: str, status_code: int) -> Response:
    return _json({"error": message}, status_code)


def _int(value: str | None, name: str, default: int | None = None, *, maximum: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number") from None
    if number < 0:
        raise ValueError(f"{name} must not be negative")
    return min(number, maximum) if maximum else number


def routes(state: BridgeState) -> list[Route]:
    def guarded(handler: Handler) -> Handler:
        async def check(request: Request) -> Response:
            token = state.settings.ops_token
            if not token:
                return _error("ops API disabled: set ops.token in the config", 403)
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return Response(
                    orjson.dumps({"error": "missing or wrong ops token"}),
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                    media_type="application/json",
                )
            try:
                return await handler(request)
            except ValueError as exc:
                return _error(str(exc), 400)
            except OutboxError as exc:
                return _error(f"outbox unavailable: {exc}", 503)

        return check

    def outbox() -> Any:
        assert state.outbox is not None
        return state.outbox

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state.outbox is None:
            return _json({"status": "starting"}, 503)
        try:
            await state.outbox.ping()
        except OutboxError as exc:
            return _json({"status": "unavailable", "outbox": str(exc)}, 503)
        return _json({"status": "ready"})

    async def full_stats() -> dict[str, Any]:
        """Outbox stats with every configured destination present, zeros included."""
        stats = await outbox().stats(state.clock.now())
        zero = {"pending": 0, "in_flight": 0, "delivered": 0, "dead": 0, "oldest_pending_age_seconds": None}
        per = stats.setdefault("destinations", {})
        for name in state.destinations:
            per.setdefault(name, {**zero, "last_success_at": None, "last_failure_at": None})
        return stats

    async def metrics(request: Request) -> Response:
        stats = None
        if state.outbox is not None:
            try:
                stats = await full_stats()
            except OutboxError:
                stats = None
        lanes = state.dispatcher.lane_stats() if state.dispatcher else {}
        return PlainTextResponse(state.metrics.render(stats, lanes), media_type="text/plain; version=0.0.4")

    async def outbox_status(request: Request) -> Response:
        return _json(await full_stats())

    def filters(params: Any) -> tuple[str | None, str | None]:
        status = params.get("status") or None
        if status is not None and status not in DELIVERY_STATUSES:
            raise ValueError(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
        destination = params.get("destination") or None
        return status, destination

    async def list_deliveries(request: Request) -> Response:
        status, destination = filters(request.query_params)
        limit = _int(request.query_params.get("limit"), "limit", 50, maximum=500) or 50
        cursor = _int(request.query_params.get("cursor"), "cursor")
        rows, next_cursor = await outbox().list_deliveries(
            status=status, destination=destination, limit=limit, cursor=cursor
        )
        return _json({"deliveries": rows, "next_cursor": next_cursor})

    async def get_delivery(request: Request) -> Response:
        delivery_id = _int(request.path_params["id"], "id")
        row = await outbox().get_delivery(delivery_id)
        if row is None:
            return _error("no such delivery", 404)
        return _json(row)

    async def retry_one(request: Request) -> Response:
        delivery_id = _int(request.path_params["id"], "id")
        assert delivery_id is not None
        row = await outbox().get_delivery(delivery_id)
        if row is None:
            return _error("no such delivery", 404)
        if row["status"] == "in_flight":
            return _error("delivery is being sent right now", 409)
        count = await outbox().retry(state.clock.now(), ids=[delivery_id], status=None)
        _wake(state, [row["destination"]])
        return _json({"retried": count})

    async def retry_bulk(request: Request) -> Response:
        body = await request.body()
        params: dict[str, Any] = dict(request.query_params)
        if body:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ValueError('body must be JSON: {"status": "dead", "destination": "..."}') from None
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            params.update(data)
        status, destination = filters(params)
        if status == "in_flight":
            raise ValueError("in-flight deliveries cannot be retried")
        count = await outbox().retry(state.clock.now(), status=status or "dead", destination=destination)
        _wake(state, [destination] if destination else None)
        return _json({"retried": count})

    async def get_webhook(request: Request) -> Response:
        webhook_id = _int(request.path_params["id"], "id")
        row = await outbox().get_webhook(webhook_id)
        if row is None:
            return _error("no such webhook", 404)
        row = dict(row)
        body = row.pop("body", b"")
        row["body"] = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
        return _json(row)

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/ops/outbox", guarded(outbox_status)),
        Route("/ops/deliveries", guarded(list_deliveries)),
        Route("/ops/deliveries/retry", guarded(retry_bulk), methods=["POST"]),
        Route("/ops/deliveries/{id:int}", guarded(get_delivery)),
        Route("/ops/deliveries/{id:int}/retry", guarded(retry_one), methods=["POST"]),
        Route("/ops/webhooks/{id:int}", guarded(get_webhook)),
    ]


def _wake(state: BridgeState, destinations: list[str] | None) -> None:
    if state.dispatcher is not None:
        state.dispatcher.wake(destinations)
