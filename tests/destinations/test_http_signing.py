"""The http destination signs with Standard Webhooks; verified with the `standardwebhooks` reference library."""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.clock import ManualClock
from bridge.destinations.base import OptionError, Verdict
from bridge.destinations.http import HttpDestination
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import deliver, settings

SECRET = "whsec_" + base64.b64encode(b"bridge-signing-key-0123456789abcdef").decode()


def make(
    url: str = "https://hooks.example.com/in",
    clock: ManualClock | None = None,
    event_names: dict[str, str] | None = None,
    **options: Any,
) -> HttpDestination:
    signing = {"signing": "standard_webhooks", "signing_secret": SECRET, **options}
    destination = HttpDestination(settings("http", url, event_names=event_names or {}, options=signing))
    destination.clock = clock or ManualClock()
    return destination


def test_the_reference_library_verifies_the_signature() -> None:
    now = int(time.time())
    request = make(clock=ManualClock(now)).render([events.purchase()])
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["webhook-timestamp"] == str(now) and headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(request.body, headers)["id"] == "ord_4835925655784"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(request.body.replace(b"54.98", b"5.98"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()).verify(request.body, headers)


def test_a_retry_keeps_the_message_id_and_signs_its_own_time() -> None:
    clock = ManualClock(1_700_000_000)
    destination = make(clock=clock, event_names={"purchase": "order_paid"})
    first = destination.render([events.purchase()]).headers
    clock.advance(600)
    second = destination.render([events.purchase()]).headers
    assert first["webhook-id"] == second["webhook-id"]
    assert first["webhook-timestamp"] != second["webhook-timestamp"]
    assert first["webhook-signature"] != second["webhook-signature"]


def test_secret_is_checked_at_startup() -> None:
    with pytest.raises(OptionError, match="whsec_"):
        make(signing_secret="whsec_not base64!")
    with pytest.raises(OptionError, match="24 random bytes"):
        make(signing_secret="whsec_" + base64.b64encode(b"short").decode())
    with pytest.raises(OptionError, match="signing"):
        HttpDestination(settings("http", "https://x.example.com", options={"signing_secret": SECRET}))
    unsigned = HttpDestination(settings("http", "https://x.example.com"))
    assert "webhook-signature" not in unsigned.render([events.purchase()]).headers


async def test_a_receiver_verifies_what_arrives() -> None:
    verified: list[str] = []

    async def receive(request: Request) -> Response:
        try:
            payload = Webhook(SECRET).verify(await request.body(), dict(request.headers))
        except WebhookVerificationError:
            return Response(status_code=401)
        verified.append(payload["id"])
        return Response(status_code=204)

    app = Starlette(routes=[Route("/in", receive, methods=["POST"])])
    async with serve(app) as base:
        answer, outcome = await deliver(make(f"{base}/in", ManualClock(time.time())), [events.purchase()])
        assert (answer.status, outcome.verdict) == (204, Verdict.DELIVERED)
        stale, outcome = await deliver(make(f"{base}/in", ManualClock(time.time() - 3600)), [events.purchase()])
        assert stale.status == 401 and outcome.verdict is Verdict.DEAD  # a replayed old request is refused
    assert verified == ["ord_4835925655784"]
