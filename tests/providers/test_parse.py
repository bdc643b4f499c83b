"""Event ids and types from the real fixtures, batches, and malformed bodies (PayloadError)."""

from __future__ import annotations

import hashlib
import json

import pytest

from bridge.errors import PayloadError, SignatureError
from bridge.providers import provider_class, provider_types
from bridge.providers.base import Ack, Provider
from tests.providers.cases import FIXTURES, NOW, build, fixture

MINE = [
    "adyen",
    "chargebee",
    "checkout_com",
    "generic_hmac",
    "gocardless",
    "lemonsqueezy",
    "mollie",
    "paddle",
    "paypal",
    "razorpay",
    "recurly",
    "shopify",
    "square",
    "standard_webhooks",
    "woocommerce",
]
OPTIONS = {
    "chargebee": {"username": "u", "password": "p"},
    "square": {"notification_url": "https://bridge.example/webhooks/square"},
    "generic_hmac": {"header": "X-Signature"},
}


def provider(provider_type: str, **options: object) -> Provider:
    secrets = ("WH",) if provider_type == "paypal" else ("4a" * 32,)
    return build(provider_type, secrets, options or OPTIONS.get(provider_type, {}))


def test_every_provider_type_has_a_signing_case() -> None:
    from tests.providers.cases import CASES

    assert {case.type for case in CASES} == set(provider_types())


def test_every_provider_module_is_discovered() -> None:
    assert set(MINE) <= set(provider_types())
    for name in MINE:
        cls = provider_class(name)
        assert cls.type == name
        assert all(h == h.lower() for h in cls.stored_headers)
        assert "authorization" not in cls.stored_headers


@pytest.mark.parametrize(
    ("case", "event_id", "event_type"),
    [
        ("paddle/customer.created.json", "evt_01hs0tqfme2xwb2hvwv87p8y3w", "customer.created"),
        ("paddle/transaction.completed.json", "evt_01hfyd0v4xppkwmjaca5xyzh5d", "transaction.completed"),
        ("paddle/transaction.created.json", "evt_01h8brhd6mj4frv1dg3cghcrs3", "transaction.created"),
        ("paddle/subscription.updated.json", "evt_01hg0trvbgjfp0avfam8a2yzq1", "subscription.updated"),
        (
            "square/webhooks.test_notification.json",
            "ac3ac95b-f97d-458c-a6e6-18981597e05f",
            "webhooks.test_notification",
        ),
        ("paypal/PAYMENT.SALE.COMPLETED.json", "WH-0G2756385H040842W-5Y612302CV158622M", "PAYMENT.SALE.COMPLETED"),
        (
            "paypal/PAYMENT.AUTHORIZATION.CREATED.json",
            "WH-7285486103862532R-5WM67492J86746059",
            "PAYMENT.AUTHORIZATION.CREATED",
        ),
        ("recurly/account.created.json", "account.created:rjxwmwedwqug@2022-09-13T21:18:40Z", "account.created"),
        ("lemonsqueezy/order_created.json", "order_created:orders/1@2021-08-11T13:54:54.000000Z", "order_created"),
        (
            "lemonsqueezy/subscription_created.json",
            "subscription_created:subscriptions/1@2023-04-14T17:17:05.000000Z",
            "subscription_created",
        ),
    ],
)
def test_ids_and_types_from_the_body(case: str, event_id: str, event_type: str) -> None:
    provider_type = case.split("/")[0]
    [event] = provider(provider_type).parse(fixture(case), {})
    assert (event.event_id, event.event_type) == (event_id, event_type)
    assert event.document == json.loads(fixture(case))


def test_gocardless_batch_is_one_event_each() -> None:
    events = provider("gocardless").parse(fixture("gocardless/subscriptions.created+mandates.created.json"), {})
    assert [(e.event_id, e.event_type) for e in events] == [
        ("EV00BD05S5VM2T", "subscriptions.created"),
        ("EV00BD05TB8K63", "mandates.created"),
    ]
    assert events[0].document["links"] == {"subscription": "SB0003JJQ2MR06"}


@pytest.mark.parametrize(
    ("case", "event_id", "event_type"),
    [
        ("AUTHORISATION", "123456789:AUTHORISATION:true", "AUTHORISATION"),
        ("CANCELLATION", "8412534564722331:CANCELLATION:true", "CANCELLATION"),
        ("CAPTURE", "PSP_REFERENCE:CAPTURE:true", "CAPTURE"),
        ("CHARGEBACK", "9915555555555555:CHARGEBACK:true", "CHARGEBACK"),
        ("REFUND", "PSP_REFERENCE:REFUND:true", "REFUND"),
    ],
)
def test_adyen_items(case: str, event_id: str, event_type: str) -> None:
    body = fixture(f"adyen/{case}.json")
    [event] = provider("adyen").parse(body, {})
    assert (event.event_id, event.event_type) == (event_id, event_type)
    assert event.document == json.loads(body)["notificationItems"][0]["NotificationRequestItem"]


def test_adyen_batch_and_acknowledgement() -> None:
    items = [json.loads(fixture(f"adyen/{c}.json"))["notificationItems"][0] for c in ("AUTHORISATION", "REFUND")]
    events = provider("adyen").parse(json.dumps({"live": "false", "notificationItems": items}).encode(), {})
    assert [e.event_type for e in events] == ["AUTHORISATION", "REFUND"]
    assert provider("adyen").acknowledge("accepted", [1, 2]) == Ack(200, b"[accepted]", "text/plain")
    assert provider("adyen").acknowledge("duplicate", []).body == b"[accepted]"


def test_adyen_banking_webhook_is_keyed_by_body_digest() -> None:
    body = b'{"type":"balancePlatform.balanceAccountSweep.updated","environment":"test","data":{}}'
    [event] = provider("adyen").parse(body, {"hmacsignature": "x"})
    assert event.event_type == "balancePlatform.balanceAccountSweep.updated"
    assert event.event_id == f"sha256:{hashlib.sha256(body).hexdigest()}"


def test_shopify_ids_come_from_headers() -> None:
    body = fixture("shopify/orders-create.json")
    headers = {"x-shopify-topic": "orders/create", "x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"}
    [event] = provider("shopify").parse(body, headers)
    assert (event.event_id, event.event_type) == ("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043", "orders/create")
    assert event.document["id"] == 450789469
    events_api = {"shopify-topic": "orders/paid", "shopify-webhook-id": "wh-2"}
    [event] = provider("shopify").parse(body, events_api)
    assert (event.event_id, event.event_type) == ("wh-2", "orders/paid")
    with pytest.raises(PayloadError, match="Topic"):
        provider("shopify").parse(body, {"x-shopify-webhook-id": "x"})
    with pytest.raises(PayloadError, match="Webhook-Id"):
        provider("shopify").parse(body, {"x-shopify-topic": "orders/create"})


def test_razorpay_event_id_header_and_fallback() -> None:
    body = fixture("razorpay/payment.captured.json")
    [event] = provider("razorpay").parse(body, {"x-razorpay-event-id": "KhpNnGNAnp6zMX"})
    assert (event.event_id, event.event_type) == ("KhpNnGNAnp6zMX", "payment.captured")
    [event] = provider("razorpay").parse(body, {})
    assert event.event_id == f"sha256:{hashlib.sha256(body).hexdigest()}"


def test_lemonsqueezy_signed_body_wins_over_the_header_and_body_hash_fallback() -> None:
    body = fixture("lemonsqueezy/order_created.json")
    [event] = provider("lemonsqueezy").parse(body, {"x-event-name": "order_refunded"})
    assert event.event_type == "order_created"  # meta.event_name is signed, X-Event-Name is not
    assert event.event_id.startswith("order_created:orders/1@")
    with pytest.raises(PayloadError, match="meta.event_name"):
        provider("lemonsqueezy").parse(b'{"meta":{},"data":{"type":"orders","id":"1"}}', {"x-event-name": "x"})
    bare = b'{"meta":{"event_name":"license_key_created"},"data":{"type":"license-keys","id":"1","attributes":{}}}'
    [event] = provider("lemonsqueezy").parse(bare, {})
    assert event.event_id == f"sha256:{hashlib.sha256(bare).hexdigest()}"


def test_standard_webhooks_id_from_header_type_from_body() -> None:
    body = fixture("standard_webhooks/contact.created.full.json")
    [event] = provider("standard_webhooks").parse(body, {"webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"})
    assert (event.event_id, event.event_type) == ("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", "contact.created")
    [event] = provider("standard_webhooks").parse(body, {"svix-id": "msg_svix"})
    assert event.event_id == "msg_svix"


def test_woocommerce_topic_delivery_id_and_ping() -> None:
    body = b'{"id":727,"status":"processing","currency":"USD","total":"29.35"}'
    headers = {"x-wc-webhook-topic": "order.created", "x-wc-webhook-delivery-id": "d41d8cd98f00b204e9800998ecf8427e"}
    [event] = provider("woocommerce").parse(body, headers)
    assert event.event_type == "order.created"
    assert event.event_id == f"d41d8cd98f00b204e9800998ecf8427e:{hashlib.sha256(body).hexdigest()[:16]}"
    assert provider("woocommerce").parse(b"webhook_id=12", {}) == []


async def test_woocommerce_ping_is_answered_only_when_enabled() -> None:
    await provider("woocommerce").verify(b"webhook_id=12", {}, NOW)
    strict = provider("woocommerce", accept_ping=False)
    with pytest.raises(SignatureError, match="x-wc-webhook-signature"):
        await strict.verify(b"webhook_id=12", {}, NOW)
    with pytest.raises(SignatureError, match="signature"):
        await provider("woocommerce").verify(b"webhook_id=12&x=1", {}, NOW)


def test_chargebee_checkout_mollie_ids() -> None:
    body = b'{"id":"ev_16BHbhF4s42tO2lK","occurred_at":1515494821,"event_type":"subscription_created","content":{}}'
    [event] = provider("chargebee").parse(body, {})
    assert (event.event_id, event.event_type) == ("ev_16BHbhF4s42tO2lK", "subscription_created")
    body = b'{"id":"evt_az5sblvku4ge3dwpztvyizgcau","type":"payment_captured","data":{"id":"pay_1","amount":6540}}'
    [event] = provider("checkout_com").parse(body, {})
    assert (event.event_id, event.event_type) == ("evt_az5sblvku4ge3dwpztvyizgcau", "payment_captured")
    [event] = provider("mollie").parse(b'{"resource":"event","id":"whe_example","type":"payment-link.paid"}', {})
    assert (event.event_id, event.event_type) == ("whe_example", "payment-link.paid")


def test_generic_hmac_ids() -> None:
    body = fixture("razorpay/payment.captured.json")
    by_path = provider("generic_hmac", header="X-Sig", id_path="payload.payment.entity.id", type_path="event")
    [event] = by_path.parse(body, {})
    assert (event.event_id, event.event_type) == ("pay_DESp9bgForNoUd", "payment.captured")
    by_header = provider("generic_hmac", header="X-Sig", id_header="X-Id", type_header="X-Type")
    [event] = by_header.parse(body, {"x-id": "d-1", "x-type": "paid"})
    assert (event.event_id, event.event_type) == ("d-1", "paid")
    [event] = provider("generic_hmac", header="X-Sig").parse(body, {})
    assert (event.event_id, event.event_type) == (f"sha256:{hashlib.sha256(body).hexdigest()}", "webhook")
    assert by_header.stored_headers == ("x-sig", "x-id", "x-type")
    with pytest.raises(PayloadError):
        by_header.parse(body, {"x-type": "paid"})
    with pytest.raises(PayloadError):
        provider("generic_hmac", header="X-Sig", id_path="nope.id").parse(body, {})


@pytest.mark.parametrize("provider_type", MINE)
@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"{}"])
def test_malformed_bodies_are_payload_errors(provider_type: str, body: bytes) -> None:
    headers = {
        "x-shopify-topic": "orders/create",
        "x-shopify-webhook-id": "1",
        "x-wc-webhook-topic": "order.created",
        "x-wc-webhook-delivery-id": "1",
        "webhook-id": "msg_1",
        "x-razorpay-event-id": "1",
        "x-event-name": "order_created",
    }
    if provider_type in ("shopify", "woocommerce") and body == b"{}":
        [event] = provider(provider_type).parse(body, headers)  # the body is the resource; ids are in headers
        return
    if provider_type == "generic_hmac" and body != b"not json":
        provider(provider_type).parse(body, headers)  # any JSON value; the id falls back to the body digest
        return
    with pytest.raises(PayloadError):
        provider(provider_type).parse(body, headers)


def test_fixture_directories_exist_for_fixture_backed_providers() -> None:
    for name in ("adyen", "gocardless", "lemonsqueezy", "paddle", "paypal", "razorpay", "recurly", "shopify"):
        assert any((FIXTURES / name).glob("*.json")), name
