"""`bridge validate-destination NAME`: one test purchase to a GA4, Meta or TikTok destination in the platform's
validation mode, and what the platform said of it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from bridge.cli.args import settings_of

#: where a real account check exists: GA4's validation server, Meta's and TikTok's test events
_VALIDATING = {"ga4": "debug", "meta_capi": "test_event_code", "tiktok": "test_event_code"}
_TEST_EVENTS_PAGE = {
    "meta_capi": "Meta: Events Manager → Test events",
    "tiktok": "TikTok: Events Manager → <pixel> → Test events",
}


def cmd_validate_destination(args: argparse.Namespace) -> int:
    """Send one preview purchase (happening now, a test customer) to a GA4, Meta or TikTok destination in
    validation mode — GA4 to /debug/mp/collect (validated, not recorded), Meta and TikTok with a test_event_code
    (shown under Test events; Meta still counts them) — and print the request and what the platform answered."""
    import dataclasses
    import time

    import httpx

    from bridge.destinations import destination_class
    from bridge.destinations.base import Verdict
    from bridge.events import format_time
    from bridge.urls import mask_url

    settings = settings_of(args)
    if args.name not in settings.destinations:
        print(f"error: no destination {args.name!r} in {settings.path}", file=sys.stderr)
        return 2
    entry = settings.destinations[args.name]
    mode = _VALIDATING.get(entry.type)
    if mode is None:
        print(f"error: {entry.type} has no validation endpoint (only {', '.join(_VALIDATING)})", file=sys.stderr)
        return 2
    extra: dict[str, Any] = {"debug": True} if mode == "debug" else {}
    if mode == "test_event_code":
        code = args.test_event_code or entry.options.get("test_event_code")
        if not code:
            print(f"error: needs --test-event-code ({_TEST_EVENTS_PAGE[entry.type]})", file=sys.stderr)
            return 2
        extra = {"test_event_code": code}
    checked = dataclasses.replace(entry, options={**entry.options, **extra}, events=("*",))
    destination = destination_class(entry.type)(checked)
    now = time.time()
    event = {
        "name": "purchase",
        "id": f"bridge-validate-{int(now)}",
        "occurred_at": format_time(int(now)),
        "customer": {"id": "bridge-validate", "email": "validate@example.com", "address": {"country_code": "US"}},
        "order": {"id": f"bridge-validate-{int(now)}", "total": "1.00", "currency": "USD"},
        "context": {"ip": "192.0.2.1"},
    }
    request = destination.render([event])
    print(f"{request.method} {mask_url(request.url)}")
    print(request.body.decode())
    try:
        with httpx.Client(timeout=entry.timeout_seconds) as client:
            answer = client.request(request.method, request.url, headers=request.headers, content=request.body)
    except httpx.HTTPError as exc:
        print(f"cannot reach {mask_url(request.url)}: {exc}", file=sys.stderr)
        return 1
    outcome = destination.classify(answer.status_code, dict(answer.headers), answer.content)
    print(f"\n→ HTTP {answer.status_code}: {answer.text[:4000]}")
    print(f"{'ok' if outcome.verdict is Verdict.DELIVERED else 'NOT OK'}: {outcome.reason}")
    return 0 if outcome.verdict is Verdict.DELIVERED else 1


def add_parser(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    validate = with_config(
        sub.add_parser("validate-destination", help="send one test purchase to GA4's validation server, Meta or TikTok")
    )
    validate.add_argument("name", help="a ga4, meta_capi or tiktok destination from the config")
    validate.add_argument("--test-event-code", help="Meta, TikTok: the code from Events Manager → Test events")
    validate.set_defaults(func=cmd_validate_destination)
