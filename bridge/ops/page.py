"""The status page: server-rendered HTML under /ops/, behind the ops token (bridge/ops/auth.py).

    GET  /ops/                        overview: destinations, webhooks by source and status (auto-refreshes)
    GET  /ops/ui/overview             the overview's table alone (what the refresh fetches)
    GET  /ops/ui/deliveries           dead letters and failures, filterable; Retry / Retry all shown
    POST /ops/ui/deliveries/retry     retry the ids posted (CSRF)
    POST /ops/ui/deliveries/skip      give the id posted up (dead, no longer holding its ordering key; CSRF)
    POST /ops/ui/destinations/{name}/enable   enable a disabled destination: its held deliveries are sent (CSRF)
    GET  /ops/ui/webhooks             stored webhooks, filterable
    GET  /ops/ui/webhooks/{id}        one webhook: headers, body, canonical events, deliveries, Replay
    POST /ops/ui/webhooks/{id}/replay dry run (the diff), then with confirm=1 the replay itself (CSRF)
    GET  /ops/ui/mappings             mapping files and hashes, the last reload; POST …/reload (CSRF)
    GET  /ops/login, POST /ops/login, POST /ops/logout
    GET  /ops/static/{name}           the page's CSS and JS, shipped in the package (nothing from a CDN)

Without a valid token or session every page answers 401 with the login form and nothing else. Actions go
through the outbox contract and replay.py only, as the JSON API's do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from bridge.errors import OutboxError
from bridge.ops import destinations, views
from bridge.ops.auth import OpsAuth, Viewer
from bridge.ops.masking import mask_headers, show_body, show_json
from bridge.ops.params import whole
from bridge.outbox.base import DELIVERY_STATUSES, WEBHOOK_STATUSES
from bridge.replay import replay_webhook
from bridge.state import BridgeState

log = logging.getLogger("bridge.ops")

#: form bodies are a token, a few ids and filters
MAX_FORM_BYTES = 64 * 1024
PAGE_SIZE = 25
_STATIC = re.compile(r"^[a-z0-9][a-z0-9_.-]*\.(css|js)$")
_STATIC_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

PageHandler = Callable[[Request, Viewer], Awaitable[Response]]


def _timestamp(value: float | None) -> str:
    if value is None:
        return "—"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bridge.ops", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ts"] = _timestamp
    env.filters["duration"] = _duration
    return env


def _html(body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code, headers=_SECURITY_HEADERS)


def _back(target: str | None, default: str) -> str:
    """A same-site path under /ops/ to return to (never another host)."""
    if target and target.startswith("/ops/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


async def _form(request: Request) -> dict[str, list[str]]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValueError("form too large")
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _one(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def routes(state: BridgeState) -> list[Route]:
    env = environment()
    auth = OpsAuth(state.settings.ops_token)

    def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("nav", None)  # error pages belong to no tab (the templates are strict about names)
        return _html(env.get_template(name).render(**context), status_code)

    def login_page(status_code: int, *, message: str | None = None, next_path: str = "/ops/") -> HTMLResponse:
        return render("login.html", status_code, message=message, next_path=next_path, enabled=auth.enabled)

    def page(handler: PageHandler, *, action: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """Authenticate (401 + the login form otherwise); for actions also check the CSRF token."""

        async def guarded(request: Request) -> Response:
            viewer = auth.viewer(request, state.clock.now())
            if viewer is None:
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return login_page(401, next_path=_back(wanted, "/ops/") if request.method == "GET" else "/ops/")
            if action:
                form = await _form(request)
                if not auth.csrf_ok(viewer, _one(form, "csrf")):
                    return _html("<p>Missing or stale form token: reload the page and try again.</p>", 403)
                request.state.form = form
            try:
                return await handler(request, viewer)
            except ValueError as exc:
                return render("error.html", 400, viewer=viewer, message=str(exc))
            except OutboxError as exc:
                return render("error.html", 503, viewer=viewer, message=f"outbox unavailable: {exc}")

        return guarded

    def wake(destinations: list[str] | None) -> None:
        if state.dispatcher is not None:
            state.dispatcher.wake(destinations)

    # -- login -------------------------------------------------------------------------------------

    async def login_form(request: Request) -> Response:
        if auth.viewer(request, state.clock.now()) is not None:
            return RedirectResponse(_back(request.query_params.get("next"), "/ops/"), 303)
        return login_page(200, next_path=_back(request.query_params.get("next"), "/ops/"))

    async def login(request: Request) -> Response:
        form = await _form(request)
        next_path = _back(_one(form, "next"), "/ops/")
        if not auth.token_matches(_one(form, "token") or ""):
            log.warning("ops login refused", extra={"client": request.client.host if request.client else None})
            return login_page(401, message="That is not the ops token.", next_path=next_path)
        cookie, _ = auth.new_session(state.clock.now())
        response = RedirectResponse(next_path, 303)
        auth.set_cookie(response, cookie, request)
        return response

    async def logout(request: Request, viewer: Viewer) -> Response:
        response = RedirectResponse("/ops/login", 303)
        auth.clear_cookie(response, request)
        return response

    # -- overview ----------------------------------------------------------------------------------

    async def overview(request: Request, viewer: Viewer) -> Response:
        notice = request.query_params.get("notice")
        return render("overview.html", viewer=viewer, data=await views.overview(state), nav="overview", notice=notice)

    async def overview_part(request: Request, viewer: Viewer) -> Response:
        return render("_overview.html", viewer=viewer, data=await views.overview(state))

    # -- deliveries --------------------------------------------------------------------------------

    async def deliveries(request: Request, viewer: Viewer) -> Response:
        params = request.query_params
        status = params.get("status") or None
        if status is not None and status not in DELIVERY_STATUSES:
            raise ValueError(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
        chosen = views.DeliveryFilter(
            destination=params.get("destination") or None,
            status=status,
            event=params.get("event") or None,
            since=views.parse_time(params.get("since"), "since"),
            until=views.parse_time(params.get("until"), "until"),
        )
        rows, next_cursor, examined = await views.find_deliveries(
            state, chosen, cursor=whole(params.get("cursor"), "cursor"), limit=PAGE_SIZE
        )
        query = {k: v for k, v in params.items() if k != "cursor" and v}
        return render(
            "deliveries.html",
            viewer=viewer,
            nav="deliveries",
            rows=rows,
            chosen=chosen,
            params=params,
            statuses=DELIVERY_STATUSES,
            destinations=sorted(state.destinations),
            examined=examined,
            next_url=f"/ops/ui/deliveries?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            notice=params.get("notice"),
        )

    async def retry(request: Request, viewer: Viewer) -> Response:
        form: dict[str, list[str]] = request.state.form
        ids = sorted({whole(i, "ids") or 0 for i in form.get("ids", []) if i})
        back = _back(_one(form, "back"), "/ops/ui/deliveries")
        if not ids:
            raise ValueError("no deliveries chosen")
        if len(ids) > 500:
            raise ValueError("at most 500 deliveries per retry")
        count = await views.outbox(state).retry(state.clock.now(), ids=ids, status=None)
        log.info("ops page retry", extra={"delivery_ids": ids, "retried": count, "via": viewer.via})
        wake(None)
        separator = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{separator}{urlencode({'notice': f'{count} of {len(ids)} retried'})}", 303)

    async def skip(request: Request, viewer: Viewer) -> Response:
        form: dict[str, list[str]] = request.state.form
        delivery_id = whole(_one(form, "id"), "id")
        back = _back(_one(form, "back"), "/ops/ui/deliveries")
        if delivery_id is None:
            raise ValueError("no delivery chosen")
        count = await views.outbox(state).skip([delivery_id], state.clock.now())
        log.info("ops page skip", extra={"delivery_ids": [delivery_id], "skipped": count, "via": viewer.via})
        wake(None)
        notice = f"delivery {delivery_id} skipped" if count else f"delivery {delivery_id} was not dead or pending"
        separator = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{separator}{urlencode({'notice': notice})}", 303)

    async def enable(request: Request, viewer: Viewer) -> Response:
        name = request.path_params["name"]
        try:
            answer = await destinations.switch(state, name, enable=True)
        except destinations.UnknownDestination:
            return render("error.html", 404, viewer=viewer, message=f"no destination named {name!r} in the config")
        notice = f"{name} enabled: its held deliveries are being sent" if answer["changed"] else f"{name} was enabled"
        return RedirectResponse(f"/ops/?{urlencode({'notice': notice})}", 303)

    # -- webhooks ----------------------------------------------------------------------------------

    async def webhooks(request: Request, viewer: Viewer) -> Response:
        params = request.query_params
        status = params.get("status") or None
        if status is not None and status not in WEBHOOK_STATUSES:
            raise ValueError(f"status must be one of {', '.join(WEBHOOK_STATUSES)}")
        rows, next_cursor = await views.outbox(state).list_webhooks(
            source=params.get("source") or None,
            event_type=params.get("type") or None,
            status=status,
            since=views.parse_time(params.get("since"), "since"),
            until=views.parse_time(params.get("until"), "until"),
            limit=PAGE_SIZE,
            cursor=whole(params.get("cursor"), "cursor"),
        )
        query = {k: v for k, v in params.items() if k != "cursor" and v}
        return render(
            "webhooks.html",
            viewer=viewer,
            nav="webhooks",
            rows=rows,
            params=params,
            statuses=WEBHOOK_STATUSES,
            sources=sorted(state.providers),
            next_url=f"/ops/ui/webhooks?{urlencode({**query, 'cursor': next_cursor})}" if next_cursor else None,
        )

    async def load_webhook(request: Request) -> dict[str, Any] | None:
        webhook_id = int(request.path_params["id"])
        row: dict[str, Any] | None = await views.outbox(state).get_webhook(webhook_id)
        return row

    async def webhook(request: Request, viewer: Viewer) -> Response:
        row = await load_webhook(request)
        if row is None:
            return render("error.html", 404, viewer=viewer, message="No such webhook.")
        reveal = request.query_params.get("reveal") == "1"
        if reveal:
            log.info("ops page revealed personal data", extra={"webhook_ids": [row["id"]], "via": viewer.via})
        return render(
            "webhook.html",
            viewer=viewer,
            nav="webhooks",
            webhook=row,
            reveal=reveal,
            headers=mask_headers(row.get("headers") or {}),
            body=show_body(row.get("body") or b"", reveal=reveal),
            events=show_json(row.get("events") or [], reveal=reveal),
        )

    async def replay(request: Request, viewer: Viewer) -> Response:
        row = await load_webhook(request)
        if row is None:
            return render("error.html", 404, viewer=viewer, message="No such webhook.")
        if state.mappings is None:
            raise ValueError("the service is starting; mappings are not loaded yet")
        form: dict[str, list[str]] = request.state.form
        confirm = _one(form, "confirm") == "1"
        force = _one(form, "force") == "1"
        report = await replay_webhook(
            views.outbox(state),
            row,
            providers=state.providers,
            mappings=state.mappings,
            destinations=state.destinations,
            now=state.clock.now(),
            dry_run=not confirm,
            force=force,
        )
        if confirm:
            log.info("ops page replay", extra={"webhook_ids": [row["id"]], "force": force, "via": viewer.via})
            wake(None)
        return render(
            "replay.html",
            viewer=viewer,
            nav="webhooks",
            webhook=row,
            report=report,
            force=force,
            canonical=show_json(report.get("canonical", []), reveal=False),
        )

    # -- mappings ----------------------------------------------------------------------------------

    async def mappings(request: Request, viewer: Viewer) -> Response:
        mapping_set = state.mappings
        last = state.reloader.last if state.reloader else None
        return render(
            "mappings.html",
            viewer=viewer,
            nav="mappings",
            directory=str(state.settings.mappings_dir),
            version=mapping_set.version if mapping_set else None,
            files=dict(mapping_set.hashes) if mapping_set else {},
            last=last if last is not None and last.at is not None else None,
            notice=request.query_params.get("notice"),
        )

    async def mappings_reload(request: Request, viewer: Viewer) -> Response:
        if state.reloader is None:
            raise ValueError("the service is starting")
        status = state.reloader.reload()
        notice = "reloaded" if status.ok else "reload rejected; the running mappings stay"
        return RedirectResponse(f"/ops/ui/mappings?{urlencode({'notice': notice})}", 303)

    # -- static ------------------------------------------------------------------------------------

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        match = _STATIC.match(name)
        file = resources.files("bridge.ops") / "static" / name
        if match is None or not file.is_file():
            return Response("not found", 404, media_type="text/plain")
        return Response(
            file.read_bytes(),
            media_type=_STATIC_TYPES[match.group(1)],
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    return [
        Route("/ops/", page(overview)),
        Route("/ops/login", login_form, methods=["GET"]),
        Route("/ops/login", login, methods=["POST"]),
        Route("/ops/logout", page(logout, action=True), methods=["POST"]),
        Route("/ops/ui/overview", page(overview_part)),
        Route("/ops/ui/deliveries", page(deliveries)),
        Route("/ops/ui/deliveries/retry", page(retry, action=True), methods=["POST"]),
        Route("/ops/ui/deliveries/skip", page(skip, action=True), methods=["POST"]),
        Route("/ops/ui/destinations/{name}/enable", page(enable, action=True), methods=["POST"]),
        Route("/ops/ui/webhooks", page(webhooks)),
        Route("/ops/ui/webhooks/{id:id}", page(webhook)),
        Route("/ops/ui/webhooks/{id:id}/replay", page(replay, action=True), methods=["POST"]),
        Route("/ops/ui/mappings", page(mappings)),
        Route("/ops/ui/mappings/reload", page(mappings_reload, action=True), methods=["POST"]),
        Route("/ops/static/{name}", static),
    ]
