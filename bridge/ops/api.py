"""The ops JSON API and health routes: health, readiness, metrics, and the outbox behind a Bearer token.

No token configured → every /ops route answers 403 (the API is off, not open). Tokens are compared in
constant time. Nothing here writes outside the outbox contract.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.errors import OutboxError
from bridge.maintenance import purge_expired
from bridge.metrics import CONTENT_TYPE
from bridge.ops import destinations, lanes
from bridge.ops.params import DAYS_MAX, ID_MAX, SECONDS_MAX, number, whole
from bridge.outbox.base import DELIVERY_STATUSES, WEBHOOK_STATUSES
from bridge.replay import replay_webhook
from bridge.state import BridgeState

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status_code, media_type="application/json")


def _error(message: str, status_code: int) -> Response:
    return _json({"error": message}, status_code)


def _refused(state: BridgeState, request: Request) -> Response | None:
    """The answer to a request without the right ops token, or None when it carries it."""
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
    return None


def routes(state: BridgeState) -> list[Route]:
    def guarded(handler: Handler) -> Handler:
        async def check(request: Request) -> Response:
            refused = _refused(state, request)
            if refused is not None:
                return refused
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
        """Ready for this replica's role: the outbox answers, and (where it delivers) no lane it holds is
        stalled. An ingest-only replica has no lanes; a dispatch-only one says so (it takes no webhooks)."""
        role = state.role
        if state.outbox is None:
            return _json({"status": "starting", "role": role}, 503)
        try:
            await state.outbox.ping()
        except OutboxError as exc:
            return _json({"status": "unavailable", "role": role, "outbox": str(exc)}, 503)
        stuck = lanes.stalled(state)
        if stuck:
            return _json({"status": "stalled", "role": role, "stalled": stuck}, 503)
        try:  # held on purpose: ready all the same, but said
            disabled = sorted(await state.outbox.disabled())
        except OutboxError as exc:
            return _json({"status": "unavailable", "role": role, "outbox": str(exc)}, 503)
        return _json({"status": "ready", "role": role, **({"disabled": disabled} if disabled else {})})

    async def full_stats() -> dict[str, Any]:
        """Outbox stats with every configured destination present, zeros included."""
        stats: dict[str, Any] = await outbox().stats(state.clock.now())
        zero = {"pending": 0, "in_flight": 0, "delivered": 0, "dead": 0, "oldest_pending_age_seconds": None}
        per = stats.setdefault("destinations", {})
        for name in state.destinations:
            per.setdefault(name, {**zero, "last_success_at": None, "last_failure_at": None})
        # the lanes: paused_until, stalled, due_since, idle_seconds, restarts, last_attempt_at
        for name, lane in lanes.lane_health(state).items():
            per.setdefault(name, dict(zero)).update(lane.as_dict())
        await destinations.add_disabled(state, per)  # null, or {at, reason, by}: its deliveries are held
        if state.dispatcher is not None:
            stats["dispatcher"] = {
                "claim_restarts": state.dispatcher.claim_restarts,
                "claim_failures": state.dispatcher.claim_failures,
            }
        return stats

    async def metrics(request: Request) -> Response:
        # it names every source and destination: behind the ops token unless ops.public_metrics is set
        refused = None if state.settings.public_metrics else _refused(state, request)
        if refused is not None:
            return refused
        stats = None
        if state.outbox is not None:
            try:
                stats = await full_stats()
            except OutboxError:
                stats = None
        tallies = state.dispatcher.lane_stats() if state.dispatcher else {}
        text = state.metrics.render(stats, tallies, lanes.lane_health(state), state.clock.now())
        return Response(text, media_type=CONTENT_TYPE)

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
        limit = whole(request.query_params.get("limit"), "limit", 50, maximum=500) or 50
        cursor = whole(request.query_params.get("cursor"), "cursor")
        rows, next_cursor = await outbox().list_deliveries(
            status=status, destination=destination, limit=limit, cursor=cursor
        )
        return _json({"deliveries": rows, "next_cursor": next_cursor})

    async def get_delivery(request: Request) -> Response:
        delivery_id = whole(request.path_params["id"], "id")
        row = await outbox().get_delivery(delivery_id)
        if row is None:
            return _error("no such delivery", 404)
        return _json(row)

    async def retry_one(request: Request) -> Response:
        delivery_id = whole(request.path_params["id"], "id")
        assert delivery_id is not None
        row = await outbox().get_delivery(delivery_id)
        if row is None:
            return _error("no such delivery", 404)
        if row["status"] == "in_flight":
            return _error("delivery is being sent right now", 409)
        count = await outbox().retry(state.clock.now(), ids=[delivery_id], status=None)
        _wake(state, [row["destination"]])
        return _json({"retried": count})

    async def skip_one(request: Request) -> Response:
        """Give a dead (or pending) delivery up: it stays dead and stops holding its ordering key."""
        delivery_id = whole(request.path_params["id"], "id")
        assert delivery_id is not None
        row = await outbox().get_delivery(delivery_id)
        if row is None:
            return _error("no such delivery", 404)
        if row["status"] not in ("dead", "pending"):
            return _error(f"only dead or pending deliveries can be skipped; this one is {row['status']}", 409)
        count = await outbox().skip([delivery_id], state.clock.now())
        _wake(state, [row["destination"]])
        return _json({"skipped": count})

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
        webhook_id = whole(request.path_params["id"], "id")
        row = await outbox().get_webhook(webhook_id)
        if row is None:
            return _error("no such webhook", 404)
        row = dict(row)
        body = row.pop("body", b"")
        row["body"] = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
        return _json(row)

    async def json_body(request: Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        if body:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise ValueError("body must be a JSON object") from None
            if not isinstance(data, dict):
                raise ValueError("body must be a JSON object")
            params.update(data)
        return params

    def flag(value: Any) -> bool:
        return value is True or str(value).lower() in ("1", "true", "yes")

    def webhook_filters(params: Mapping[str, Any]) -> dict[str, Any]:
        status = params.get("status") or None
        if status is not None and status not in WEBHOOK_STATUSES:
            raise ValueError(f"status must be one of {', '.join(WEBHOOK_STATUSES)}")
        return {
            "source": params.get("source") or None,
            "event_type": params.get("type") or params.get("event_type") or None,
            "status": status,
            "since": number(params.get("since"), "since", minimum=0, maximum=SECONDS_MAX),
            "until": number(params.get("until"), "until", minimum=0, maximum=SECONDS_MAX),
        }

    async def list_webhooks(request: Request) -> Response:
        params = request.query_params
        limit = whole(params.get("limit"), "limit", 50, maximum=500) or 50
        rows, next_cursor = await outbox().list_webhooks(
            **webhook_filters(params), limit=limit, cursor=whole(params.get("cursor"), "cursor")
        )
        return _json({"webhooks": rows, "next_cursor": next_cursor})

    async def replay(webhook_id: int, *, dry_run: bool, force: bool) -> dict[str, Any] | None:
        row = await outbox().get_webhook(webhook_id)
        if row is None:
            return None
        assert state.mappings is not None
        report = await replay_webhook(
            outbox(),
            row,
            providers=state.providers,
            mappings=state.mappings,
            destinations=state.destinations,
            now=state.clock.now(),
            dry_run=dry_run,
            force=force,
            limits=state.settings.limits,
        )
        return report

    async def replay_one(request: Request) -> Response:
        params = await json_body(request)
        webhook_id = whole(request.path_params["id"], "id")
        assert webhook_id is not None
        report = await replay(webhook_id, dry_run=flag(params.get("dry_run")), force=flag(params.get("force")))
        if report is None:
            return _error("no such webhook", 404)
        if not report["dry_run"]:
            _wake(state, None)
        return _json(report)

    async def replay_bulk(request: Request) -> Response:
        params = await json_body(request)
        dry_run, force = flag(params.get("dry_run")), flag(params.get("force"))
        limit = whole(params.get("limit"), "limit", 1000, maximum=10_000) or 1000
        ids = params.get("ids")
        if ids is not None:
            if not isinstance(ids, list) or not all(type(i) is int and 0 <= i <= ID_MAX for i in ids):
                raise ValueError(f"ids must be a list of webhook ids (whole numbers from 0 to {ID_MAX})")
            chosen = ids[:limit]
        else:
            filters = webhook_filters(params)
            if not any(v is not None for v in filters.values()):
                raise ValueError("give ids or at least one filter (source, type, status, since, until)")
            chosen, cursor = [], None
            while len(chosen) < limit:
                rows, cursor = await outbox().list_webhooks(**filters, limit=min(500, limit), cursor=cursor)
                chosen += [row["id"] for row in rows]
                if cursor is None:
                    break
            chosen = chosen[:limit]
        reports = [r for r in [await replay(i, dry_run=dry_run, force=force) for i in chosen] if r is not None]
        if not dry_run:
            _wake(state, None)
        summary: dict[str, int] = {}
        for report in reports:
            for delivery in report.get("deliveries", []):
                action = delivery["action"].split(" ")[0]
                summary[action] = summary.get(action, 0) + 1
        return _json({"replayed": len(reports), "dry_run": dry_run, "deliveries": summary, "webhooks": reports})

    async def mappings_status(request: Request) -> Response:
        reloader = state.reloader
        mappings = state.mappings
        last = reloader.last if reloader else None
        return _json(
            {
                "version": mappings.version if mappings else None,
                "files": dict(mappings.hashes) if mappings else {},
                "directory": str(state.settings.mappings_dir),
                "last_reload": None if last is None or last.at is None else vars(last),
            }
        )

    async def mappings_reload(request: Request) -> Response:
        if state.reloader is None:
            return _error("service is starting", 503)
        status = state.reloader.reload()
        return _json(vars(status), 200 if status.ok else 422)

    async def purge(request: Request) -> Response:
        """The retention rule of bridge/maintenance.py, now; `older_than_days` overrides the row horizon."""
        params = await json_body(request)
        days = number(params.get("older_than_days"), "older_than_days", minimum=1, maximum=DAYS_MAX)
        statuses = params.get("statuses", ["delivered"])
        if not isinstance(statuses, list) or not set(statuses) <= {"delivered", "dead"}:
            raise ValueError('statuses is a list of "delivered" and/or "dead"')
        report = await purge_expired(
            outbox(), state.clock.now(), state.settings.retention, delivered_days=days, statuses=tuple(statuses)
        )
        return _json(
            {"deleted_deliveries": report.deliveries, "deleted_webhooks": report.webhooks, "deleted_keys": report.keys}
        )

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/ops/outbox", guarded(outbox_status)),
        Route("/ops/deliveries", guarded(list_deliveries)),
        Route("/ops/deliveries/retry", guarded(retry_bulk), methods=["POST"]),
        Route("/ops/deliveries/{id:id}", guarded(get_delivery)),
        Route("/ops/deliveries/{id:id}/retry", guarded(retry_one), methods=["POST"]),
        Route("/ops/deliveries/{id:id}/skip", guarded(skip_one), methods=["POST"]),
        Route("/ops/webhooks", guarded(list_webhooks)),
        Route("/ops/webhooks/replay", guarded(replay_bulk), methods=["POST"]),
        Route("/ops/webhooks/{id:id}", guarded(get_webhook)),
        Route("/ops/webhooks/{id:id}/replay", guarded(replay_one), methods=["POST"]),
        Route("/ops/mappings", guarded(mappings_status)),
        Route("/ops/mappings/reload", guarded(mappings_reload), methods=["POST"]),
        Route("/ops/outbox/purge", guarded(purge), methods=["POST"]),
        *destinations.routes(state, guarded),
    ]


def _wake(state: BridgeState, destinations: list[str] | None) -> None:
    if state.dispatcher is not None:
        state.dispatcher.wake(destinations)
