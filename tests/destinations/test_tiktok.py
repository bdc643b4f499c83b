from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.cli import main
from bridge.destinations import destination_class
from bridge.destinations._common import BatchTooLarge
from bridge.destinations.base import HttpRequest, OptionError, Verdict
from bridge.destinations.tiktok import TikTokDestination
from bridge.errors import RenderError
from bridge.sinks.server import serve
from bridge.sinks.tiktok import TikTokFake
from tests.destinations import events
from tests.destinations.helpers import body, deliver, send
from tests.destinations.wave import build, clock_after, moment
from tests.harness import FIXTURES, write_config

PIXEL = "CABCD1234EFGH5678IJK"
TOKEN = "tt_access_token_0123456789"
OPTIONS = {"pixel_code": PIXEL, "access_token": TOKEN}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make(event: dict[str, Any] | None = None, url: str = "", seconds: float = 60.0, **options: Any) -> Any:
    return build("tiktok", clock_after(event or events.purchase(), seconds), url, options={**OPTIONS, **options})


def trial_started() -> dict[str, Any]:
    event = events.subscription_started()
    event.update(name="trial_started", id="sub_1PqRsT:trial")
    return event


def test_registered_and_token_only_in_its_header() -> None:
    assert destination_class("tiktok") is TikTokDestination
    destination = make()
    request = destination.render([events.purchase()])
    assert request.url == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert request.headers["Access-Token"] == TOKEN and request.headers["Content-Type"] == "application/json"
    assert TOKEN not in repr(destination) and TOKEN not in request.url and TOKEN.encode() not in request.body
    with pytest.raises(OptionError, match="access token"):
        make(url="https://business-api.tiktok.com/?access_token=x")
    with pytest.raises(OptionError, match="pixel_code"):
        make(pixel_code="<script>ttq.load('C123')</script>")
    with pytest.raises(OptionError, match="access_token"):
        build("tiktok", clock_after(events.purchase()), options={"pixel_code": PIXEL})
    with pytest.raises(OptionError, match="unknown option 'pixel_id'"):
        make(pixel_id="123")
    configured = build(
        "tiktok", clock_after(events.purchase()), options=OPTIONS, headers={"access-token": "other", "X-Team": "growth"}
    )
    sent = configured.render([events.purchase()]).headers
    assert sent["Access-Token"] == TOKEN and "access-token" not in sent and sent["X-Team"] == "growth"


def test_purchase_golden() -> None:
    request = make().render([events.purchase()])
    assert b'"value":54.98,' in request.body and b'"price":24.99' in request.body
    assert body(request) == {
        "event_source": "web",
        "event_source_id": PIXEL,
        "data": [
            {
                "event": "CompletePayment",
                "event_time": int(moment("2024-01-15T14:30:45Z")),
                "event_id": "ord_4835925655784",
                "user": {
                    "email": [sha("bill.call@example.com")],
                    "phone": [sha("+18435550142")],  # E.164 with "+", unlike Meta
                    "external_id": [sha("cus_Q1w2E3r4")],
                    "ip": "203.0.113.7",
                    "user_agent": events.CHROME_UA,
                },
                "properties": {
                    "currency": "USD",
                    "value": 54.98,
                    "order_id": "ord_4835925655784",
                    "content_type": "product",
                    "contents": [{"content_id": "LB00161-34689553170476", "quantity": 2, "price": 24.99}],
                },
                "page": {
                    "url": "https://shop.example.com/checkout/success?order=1005",
                    "referrer": "https://www.google.com/",
                },
                "limited_data_use": False,
            }
        ],
    }
    assert len(str(body(request)["data"][0]["event_time"])) == 10  # seconds, not milliseconds
    for raw in (b"Bill.Call", b"bill.call@", b"843", b"cus_Q1w2E3r4"):
        assert raw not in request.body


def test_click_and_cookie_ids_travel_unhashed() -> None:
    event = events.purchase()
    event["context"].update(ttclid="E.C.P.CsQBAbCdEf_CaseKept", ttp="2Xy9AbCdEfGhIjKlMnOpQrStUv")
    user = body(make(event).render([event]))["data"][0]["user"]
    assert (user["ttclid"], user["ttp"]) == ("E.C.P.CsQBAbCdEf_CaseKept", "2Xy9AbCdEfGhIjKlMnOpQrStUv")
    assert user["ip"] == "203.0.113.7" and user["user_agent"] == events.CHROME_UA
    # a click id only in the landing URL is taken from there
    landed = events.purchase()
    landed["context"]["page_url"] = "https://shop.example.com/p/1?utm_source=tiktok&ttclid=E.C.P.FromUrl"
    assert body(make(landed).render([landed]))["data"][0]["user"]["ttclid"] == "E.C.P.FromUrl"


def test_prehashed_values_are_not_hashed_again() -> None:
    event = events.purchase()
    event["customer"]["email"] = sha("bill.call@example.com").upper()
    event["customer"]["phone"] = sha("+18435550142")
    user = body(make(event).render([event]))["data"][0]["user"]
    assert user["email"] == [sha("bill.call@example.com")] and user["phone"] == [sha("+18435550142")]


def test_a_phone_without_country_code_is_read_in_the_customer_country_or_left_out() -> None:
    event = events.purchase()
    event["customer"]["phone"] = "(843) 555-0142"
    assert body(make(event).render([event]))["data"][0]["user"]["phone"] == [sha("+18435550142")]
    del event["customer"]["address"]
    assert "phone" not in body(make(event).render([event]))["data"][0]["user"]


def test_time_is_seconds_never_in_the_future_and_no_age_limit_is_invented() -> None:
    event = events.purchase()
    ahead = make(event, seconds=-120)  # the provider's clock two minutes ahead of ours
    assert body(ahead.render([event]))["data"][0]["event_time"] == int(moment(event["occurred_at"])) - 120
    old = make(event, seconds=30 * 86400)
    assert body(old.render([event]))["data"][0]["event_time"] == int(moment(event["occurred_at"]))


def test_name_table_and_overrides() -> None:
    started, trial, refund = events.subscription_started(), trial_started(), events.refund()
    destination = make(started)
    assert body(destination.render([started]))["data"][0]["event"] == "Subscribe"
    sent = body(destination.render([trial]))["data"][0]
    assert sent["event"] == "StartTrial" and (sent["properties"]["value"], sent["properties"]["currency"]) == (
        19.0,
        "EUR",
    )
    assert not destination.routes("refund") and not destination.routes("subscription_renewed")
    with pytest.raises(RenderError, match="not sent to tiktok"):
        destination.render([refund])
    renamed = build(
        "tiktok",
        clock_after(refund),
        options=OPTIONS,
        event_names={"purchase": "Purchase", "refund": "Refund"},
    )
    assert renamed.routes("refund")
    assert body(renamed.render([refund]))["data"][0]["event"] == "Refund"
    assert body(renamed.render([events.purchase()]))["data"][0]["event"] == "Purchase"
    only = build("tiktok", clock_after(started), options=OPTIONS, events=("purchase",))
    assert only.routes("purchase") and not only.routes("subscription_started")


def test_value_needs_a_currency_and_a_bad_event_goes_alone() -> None:
    good, bad = events.numbered_purchase(1), events.numbered_purchase(2)
    del bad["order"]["currency"]
    destination = make(good)
    with pytest.raises(RenderError, match="value without a currency"):
        destination.render([bad])
    with pytest.raises(BatchTooLarge) as raised:
        destination.render([good, bad, events.numbered_purchase(3)])
    assert raised.value.fits == 1
    assert len(body(destination.render([good, events.numbered_purchase(3)]))["data"]) == 2


def test_batches_keep_to_a_thousand_events_and_a_megabyte() -> None:
    many = [events.numbered_purchase(n) for n in range(1001)]
    destination = make(many[0])
    assert destination.max_batch == 1000
    with pytest.raises(BatchTooLarge, match="TikTok takes at most 1000 events") as raised:
        destination.render(many)
    assert raised.value.fits == 1000
    assert len(body(destination.render(many[:1000]))["data"]) == 1000
    bulky = []
    for n in range(3):
        event = events.numbered_purchase(n)
        event["order"]["items"] = [{**event["order"]["items"][0], "sku": f"SKU-{n}-{i:05d}"} for i in range(6000)]
        bulky.append(event)
    with pytest.raises(BatchTooLarge, match="1000000 bytes") as raised:
        destination.render(bulky)
    assert raised.value.fits in (1, 2)
    assert len(destination.render(bulky[: raised.value.fits]).body) <= 1_000_000


def test_ad_user_data_denied_keeps_every_identifier_out() -> None:
    event = events.purchase()
    event["consent"] = {"ad_user_data": False}
    event["context"].update(ttclid="E.C.P.Secret", ttp="ttp-cookie-value")
    event["context"]["page_url"] = "https://shop.example.com/thanks?order=1005&ttclid=E.C.P.Secret"
    destination = make(event)
    assert destination.accepts(event)
    request = destination.render([event])
    sent = body(request)["data"][0]
    assert sent["user"] == {"user_agent": events.CHROME_UA}
    assert sent["page"]["url"] == "https://shop.example.com/thanks?order=1005"  # the click id left the URL too
    for text in (b"203.0.113.7", b"E.C.P.Secret", b"ttp-cookie-value", sha("bill.call@example.com").encode()):
        assert text not in request.body
    server_only = events.subscription_started()  # no user agent, no browser
    server_only["consent"] = {"ad_user_data": False}
    assert not destination.accepts(server_only)  # nothing left TikTok could match on: not routed
    with pytest.raises(RenderError, match="something to match"):
        destination.render([server_only])
    anonymous = events.pos_purchase()
    assert not destination.accepts(anonymous)


def test_require_and_ignore() -> None:
    unknown = events.pos_purchase()
    unknown["customer"] = {"email": "pos@example.com"}
    assert not make(unknown, consent="require").accepts(unknown)
    assert make(unknown).accepts(unknown)
    granted = events.purchase()
    granted["consent"] = {"ad_user_data": True}
    assert make(granted, consent="require").accepts(granted)
    with pytest.raises(RenderError, match="consent this destination requires"):
        make(unknown, consent="require").render([unknown])
    denied = events.purchase()
    denied["consent"] = {"ad_user_data": False}
    sent = body(make(denied, consent="ignore").render([denied]))["data"][0]
    assert sent["user"]["email"] == [sha("bill.call@example.com")] and sent["user"]["ip"] == "203.0.113.7"
    with pytest.raises(OptionError, match="consent"):
        make(consent="maybe")


def test_test_event_code_and_limited_data_use() -> None:
    document = body(make(test_event_code="TEST81234", limited_data_use=True).render([events.purchase()]))
    assert document["test_event_code"] == "TEST81234"
    assert document["data"][0]["limited_data_use"] is True
    assert "test_event_code" not in body(make().render([events.purchase()]))


@pytest.mark.parametrize(
    ("status", "answer", "verdict", "words"),
    [
        (200, {"code": 0, "message": "OK", "request_id": "r1", "data": {}}, Verdict.DELIVERED, "OK (TikTok code 0"),
        (200, {"code": 20001, "message": "partial", "request_id": "r2"}, Verdict.DELIVERED, "partial success"),
        (200, {"code": 40100, "message": "Too many requests"}, Verdict.RETRY, "rate limited"),
        (200, {"code": 40700, "message": "internal"}, Verdict.RETRY, "TikTok internal error"),
        (200, {"code": 50002, "message": "system error"}, Verdict.RETRY, "TikTok server error"),
        (200, {"code": 40001, "message": "No permission"}, Verdict.DEAD, "check access_token"),
        (200, {"code": 40002, "message": "data[0].event_time: invalid"}, Verdict.DEAD, "invalid parameter"),
        (200, {"code": 40105, "message": "Access token invalid"}, Verdict.DEAD, "TikTok refused the request"),
        (200, {"ok": True}, Verdict.DEAD, "without TikTok's code"),
        (401, {}, Verdict.DEAD, "check access_token"),
        (429, {}, Verdict.RETRY, "HTTP 429"),
        (503, {"code": 50000, "message": "busy"}, Verdict.RETRY, "TikTok server error"),
        (502, b"<html>bad gateway</html>", Verdict.RETRY, "HTTP 502"),
    ],
)
def test_responses(status: int, answer: Any, verdict: Verdict, words: str) -> None:
    raw = answer if isinstance(answer, bytes) else orjson.dumps(answer)
    outcome = make().classify(status, {}, raw)
    assert outcome.verdict is verdict and words in outcome.reason, outcome.reason


async def test_the_strict_sink_takes_every_rendered_event() -> None:
    samples = [events.purchase(), events.subscription_started(), trial_started()]
    fake = TikTokFake(PIXEL, TOKEN)
    async with serve(fake.app) as base:
        for sample in samples:
            destination = build("tiktok", clock_after(sample), base, options={**OPTIONS, "test_event_code": "T1"})
            answer, outcome = await deliver(destination, [sample])
            assert (answer.status, outcome.verdict) == (200, Verdict.DELIVERED), fake.rejected[-1:]
        again = build("tiktok", clock_after(samples[0]), base, options=OPTIONS)
        assert (await deliver(again, [events.purchase()]))[1].verdict is Verdict.DELIVERED  # a retry
        batch = [events.numbered_purchase(n) for n in range(5)]
        assert (await deliver(make(batch[0], base), batch))[1].verdict is Verdict.DELIVERED
    assert [r["path"] for r in fake.received] == ["/open_api/v1.3/event/track/"] * 5
    assert len(fake.events) == 8 and fake.duplicates == 1 and len(fake.test_events) == 3
    assert fake.rejected == [] and all(r["query"] == {} for r in fake.received)


async def test_the_sink_refuses_what_tiktok_refuses_and_the_destination_reads_it() -> None:
    event = events.purchase()
    destination = make(event)
    request = destination.render([event])
    fake = TikTokFake(PIXEL, TOKEN)
    cases = {
        "milliseconds": lambda d: d["data"][0].update(event_time=d["data"][0]["event_time"] * 1000),
        "plaintext email": lambda d: d["data"][0]["user"].update(email=["bill.call@example.com"]),
        "hashed ip": lambda d: d["data"][0]["user"].update(ip=sha("203.0.113.7")),
        "hashed ttclid": lambda d: d["data"][0]["user"].update(ttclid=sha("E.C.P.x")),
        "value as text": lambda d: d["data"][0]["properties"].update(value="54.98"),
        "lower-case currency": lambda d: d["data"][0]["properties"].update(currency="usd"),
        "no event name": lambda d: d["data"][0].update(event=""),
        "bad event_source": lambda d: d.update(event_source="server"),
        "empty data": lambda d: d.update(data=[]),
        "unknown user key": lambda d: d["data"][0]["user"].update(em=[sha("x")]),
    }
    async with serve(fake.app) as base:
        url = request.url.replace("https://business-api.tiktok.com", base)
        for why, change in cases.items():
            document = body(request)
            change(document)
            answer = await send(HttpRequest("POST", url, request.headers, orjson.dumps(document)))
            assert answer.status == 200 and answer.json()["code"] == 40002, why  # TikTok: 200 and a code
            outcome = destination.classify(answer.status, answer.headers, answer.body)
            assert outcome.verdict is Verdict.DEAD and "invalid parameter" in outcome.reason, why
        wrong_token = {**request.headers, "Access-Token": "nope"}
        answer = await send(HttpRequest("POST", url, wrong_token, request.body))
        assert answer.json()["code"] == 40001
        other_pixel = body(request) | {"event_source_id": "COTHER0000000000000"}
        answer = await send(HttpRequest("POST", url, request.headers, orjson.dumps(other_pixel)))
        assert answer.json()["code"] == 40001
        fake.script(200, body={"code": 40100, "message": "Too many requests", "request_id": "r"})
        answer = await send(HttpRequest("POST", url, request.headers, request.body))
        assert destination.classify(answer.status, answer.headers, answer.body).verdict is Verdict.RETRY
    assert fake.events == [] and [r["why"] for r in fake.received] == ["scripted"]  # a 200 either way
    assert len(fake.rejected) == len(cases) + 2


async def test_validate_destination_sends_one_test_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = TikTokFake(PIXEL, TOKEN)
    async with serve(fake.app) as base:
        destinations = {
            "tiktok": {"type": "tiktok", "url": base, **OPTIONS},
            "revoked": {"type": "tiktok", "url": base, "pixel_code": PIXEL, "access_token": "revoked_token_0000"},
        }
        config = write_config(tmp_path, destinations=destinations)
        run = ["validate-destination", "tiktok", "--config", str(config)]
        assert await asyncio.to_thread(main, run) == 2  # no test code
        assert "--test-event-code" in capsys.readouterr().err
        assert await asyncio.to_thread(main, [*run, "--test-event-code", "TEST42"]) == 0
        out = capsys.readouterr().out
        assert '"test_event_code":"TEST42"' in out and "ok: HTTP 200 OK (TikTok code 0" in out
        assert TOKEN not in out
        revoked = ["validate-destination", "revoked", "--config", str(config), "--test-event-code", "TEST42"]
        assert await asyncio.to_thread(main, revoked) == 1
        assert "NOT OK: HTTP 200 no permission" in capsys.readouterr().out
    [sent] = fake.test_events
    assert sent["event"] == "CompletePayment" and sent["user"]["email"] == [sha("validate@example.com")]
    assert b"validate@example.com" not in fake.received[0]["body"]


def test_preview_shows_the_request_with_the_token_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, destinations={"tiktok": {"type": "tiktok", **OPTIONS}})
    sample = FIXTURES / "stripe" / "checkout.session.completed.browser_ids.json"
    assert main(["preview", "--config", str(config), "--source", "stripe", str(sample), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert TOKEN not in out
    [request] = orjson.loads(out)["events"][0]["requests"]
    assert request["url"] == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert request["headers"]["Access-Token"] == "****" + TOKEN[-4:]
    [event] = orjson.loads(request["body"])["data"]
    assert (event["event"], event["event_id"]) == ("CompletePayment", "pi_1PgafyB7WZ01zgkWSjxsAJo3")
    assert event["user"]["email"] == [sha("jenny.rosen@example.com")]
