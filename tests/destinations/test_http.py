from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.destinations import destination_class
from bridge.destinations.base import USER_AGENT, OptionError, Verdict
from bridge.destinations.http import HttpDestination
from bridge.errors import RenderError
from bridge.events import CANONICAL_NAMES
from bridge.sinks.server import serve
from tests.destinations import events
from tests.destinations.helpers import body, deliver, settings

URL = "https://hooks.example.com/events"


def make(url: str = URL, headers: dict[str, str] | None = None, **options: Any) -> HttpDestination:
    return HttpDestination(settings("http", url, headers=headers or {}, options=options))


def test_registered_by_type() -> None:
    assert destination_class("http") is HttpDestination


def test_plain_mode_posts_the_canonical_event() -> None:
    event = events.purchase()
    request = make(headers={"X-Api-Key": "k1"}).render([event])
    assert request.method == "POST" and request.url == URL
    assert request.headers == {
        "User-Agent": USER_AGENT,
        "Idempotency-Key": "ord_4835925655784",
        "X-Api-Key": "k1",
        "Content-Type": "application/json",
    }
    assert body(request) == event  # money stays a decimal string, nothing dropped


def test_all_names_routed_and_renamed() -> None:
    dest = make()
    assert all(dest.routes(name) for name in CANONICAL_NAMES)
    assert dest.routes("my_custom_event")
    renamed = HttpDestination(settings("http", URL, event_names={"purchase": "order.completed"}))
    assert body(renamed.render([events.purchase()]))["name"] == "order.completed"
    filtered = HttpDestination(settings("http", URL, events=("refund",)))
    assert filtered.routes("refund") and not filtered.routes("purchase")


def test_configured_content_type_is_not_duplicated() -> None:
    request = make(headers={"content-type": "application/vnd.acme+json"}).render([events.refund()])
    assert [h for h in request.headers if h.lower() == "content-type"] == ["content-type"]


def test_templated_mode() -> None:
    dest = make(
        url="",
        method="put",
        url_template="concat('https://crm.example.com/customers/', customer.id, '/events/', id)",
        headers_template={"X-Event": "name", "X-Amount": "order.total", "X-Missing": "order.nope"},
        body="{event: name, amount: order.total, cents: mul(`100`, order.total), currency: lower(order.currency), "
        "skus: order.items[].sku}",
        idempotency_header="",
    )
    request = dest.render([events.purchase()])
    assert request.method == "PUT"
    assert request.url == "https://crm.example.com/customers/cus_Q1w2E3r4/events/ord_4835925655784"
    assert request.headers == {
        "User-Agent": USER_AGENT,
        "X-Event": "purchase",
        "X-Amount": "54.98",
        "Content-Type": "application/json",
    }
    assert body(request) == {
        "event": "purchase",
        "amount": "54.98",
        "cents": "5498.00",
        "currency": "usd",
        "skus": ["LB00161-34689553170476"],
    }


def test_get_without_body() -> None:
    request = make(method="GET", url_template="concat('https://x.example.com/ping?id=', id)").render([events.refund()])
    assert request.method == "GET" and request.body == b"" and "Content-Type" not in request.headers
    assert request.url == "https://x.example.com/ping?id=re_3Oabc123"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"body": "{event: name"}, "body"),
        ({"body": "nosuchfunction(name)"}, "body"),
        ({"body": "upper(name, name)"}, "body"),
        ({"body": "minor_to_major(order.total, 'XX')"}, "body"),
        ({"url_template": "concat('https://x', "}, "url_template"),
        ({"headers_template": {"X-A": "a.["}}, "headers_template.X-A"),
        ({"headers_template": ["X-A"]}, "headers_template"),
        ({"method": "TRACE"}, "method"),
        ({"bodyy": "name"}, "bodyy"),
    ],
)
def test_bad_templates_fail_at_construction(options: dict[str, Any], key: str) -> None:
    with pytest.raises(OptionError) as info:
        make(**options)
    assert info.value.key == key


def test_url_required() -> None:
    with pytest.raises(OptionError) as info:
        HttpDestination(settings("http", ""))
    assert info.value.key == "url"
    with pytest.raises(OptionError):
        make(url="ftp://example.com/x")


def test_template_failing_on_an_event_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="not an absolute"):
        make(url_template="order.id").render([events.purchase()])
    with pytest.raises(RenderError, match="url"):
        make(url_template="join('', ['https://x.example.com/', subscription.id])").render([events.purchase()])
    with pytest.raises(RenderError, match="body"):
        make(body="minor_to_major(order.total, order.coupon)").render([events.purchase()])
    with pytest.raises(RenderError, match="null"):
        make(body="subscription").render([events.purchase()])
    with pytest.raises(RenderError, match="header X-Items"):
        make(headers_template={"X-Items": "order.items"}).render([events.purchase()])


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, Verdict.DELIVERED), (204, Verdict.DELIVERED), (400, Verdict.DEAD), (404, Verdict.DEAD),
     (410, Verdict.DISABLE), (429, Verdict.RETRY), (500, Verdict.RETRY), (301, Verdict.RETRY)],
)  # fmt: skip
def test_classify(status: int, verdict: Verdict) -> None:
    outcome = make().classify(status, {}, b"nope")
    assert outcome.verdict is verdict
    assert ("nope" in outcome.reason) == (status >= 300)


async def test_sends_to_a_receiver() -> None:
    seen: list[dict[str, Any]] = []

    async def receive(request: Request) -> Response:
        seen.append(
            {"headers": dict(request.headers), "body": orjson.loads(await request.body()), "path": request.url.path}
        )
        return Response(status_code=202)

    app = Starlette(routes=[Route("/hook/{code}", receive, methods=["POST"])])
    async with serve(app) as base:
        dest = make(
            url="",
            url_template=f"concat('{base}/hook/', source.provider)",
            headers_template={"Authorization": "concat('Token ', 'abc')"},
            body="{event: name, id: id, total: order.total}",
        )
        answer, outcome = await deliver(dest, [events.purchase()])
    assert answer.status == 202 and outcome.verdict is Verdict.DELIVERED
    assert seen[0]["path"] == "/hook/stripe"
    assert seen[0]["headers"]["authorization"] == "Token abc"
    assert seen[0]["body"] == {"event": "purchase", "id": "ord_4835925655784", "total": "54.98"}
