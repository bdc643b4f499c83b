"""The published signature vectors (tests/providers/vectors/, copies of shared/fixtures/signature-vectors/).

OFFICIAL = hard-coded in the provider's own SDK tests or spec; DERIVED = computed by us from the documented
algorithm (labelled in each test id). The clock is frozen at each vector's own timestamp where the scheme
has one. Vectors without a provider here (Braintree, Recharge) are listed at the end with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import zlib
from typing import Any

import pytest

from bridge.errors import SignatureError
from bridge.providers.adyen import signing_string
from bridge.providers.paypal import check_cert_url, signed_message
from tests.providers.cases import FIXTURES, VECTORS, build, vector


def _h(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# -- Standard Webhooks / Polar -------------------------------------------------------------------


async def test_official_standard_webhooks_sign_vector() -> None:
    v = vector("standard-webhooks.json")["vectors"][0]
    provider = build("standard_webhooks", (v["secret"],), {})
    headers = _h(v["headers"])
    await provider.verify(v["payload"].encode(), headers, float(headers["webhook-timestamp"]))
    # the vector's own note: with the default 5 min tolerance and a real clock it must be refused
    with pytest.raises(SignatureError, match="timestamp"):
        await provider.verify(v["payload"].encode(), headers, float(headers["webhook-timestamp"]) + 301)


async def test_official_standard_webhooks_multi_signature_header() -> None:
    data = vector("standard-webhooks.json")
    v = data["vectors"][0]
    header = data["multi_signature_example_from_tests"]["header"].replace("<valid v1 sig>", v["expected_signature"])
    headers = {**_h(v["headers"]), "webhook-signature": header}
    provider = build("standard_webhooks", (v["secret"],), {})
    await provider.verify(v["payload"].encode(), headers, float(headers["webhook-timestamp"]))


async def test_official_standard_webhooks_svix_header_names() -> None:
    v = vector("standard-webhooks.json")["vectors"][0]
    headers = {k.replace("webhook-", "svix-"): value for k, value in _h(v["headers"]).items()}
    provider = build("standard_webhooks", (v["secret"],), {})
    await provider.verify(v["payload"].encode(), headers, float(headers["svix-timestamp"]))


async def test_derived_polar_vector_needs_raw_secret_encoding() -> None:
    v = vector("polar.json")["vectors"][0]
    headers = {**_h(v["headers"]), "webhook-signature": v["expected_signature"]}
    now = float(headers["webhook-timestamp"])
    raw = build("standard_webhooks", (v["secret_raw"],), {"secret_encoding": "raw"})
    await raw.verify(v["payload"].encode(), headers, now)
    # the same string passed straight to Standard Webhooks (base64-decoded) is the vector's contrast case
    with pytest.raises(SignatureError):
        await build("standard_webhooks", (v["secret_raw"],), {}).verify(v["payload"].encode(), headers, now)
    # ... and what Polar's SDK hands to the library (base64 of the raw secret) works in the default encoding
    encoded = build("standard_webhooks", (v["secret_as_passed_to_standardwebhooks_lib"],), {})
    await encoded.verify(v["payload"].encode(), headers, now)


# -- Paddle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1], ids=["official-standard-payload", "official-special-characters"])
async def test_official_paddle_vectors(index: int) -> None:
    v = vector("paddle.json")["vectors"][index]
    timestamp = float(v["header"].split(";")[0].removeprefix("ts="))
    provider = build("paddle", (v["secret"],), {})
    await provider.verify(v["payload"].encode(), {"paddle-signature": v["header"]}, timestamp)


async def test_official_paddle_vector_body_is_the_stripped_fixture() -> None:
    v = vector("paddle.json")["vectors"][0]
    assert (FIXTURES / "paddle/customer.created.json").read_bytes().strip() == v["payload"].encode()


async def test_official_paddle_rotation_vector_with_several_h1() -> None:
    v = vector("paddle.json")["vectors"][2]
    provider = build("paddle", tuple(v["secrets_tried_in_order"]), {}, tolerance=0)  # Verifier(0) in the SDK test
    await provider.verify(v["payload"].encode(), {"paddle-signature": v["header"]}, 2_000_000_000.0)
    only_old = build("paddle", tuple(v["secrets_tried_in_order"][:2]), {}, tolerance=0)
    with pytest.raises(SignatureError):
        await only_old.verify(v["payload"].encode(), {"paddle-signature": v["header"]}, 2_000_000_000.0)


# -- Square ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", vector("square.json")["vectors"], ids=lambda v: f"official-{v['name']}")
async def test_official_square_vectors(v: dict[str, Any]) -> None:
    provider = build("square", (v["signature_key"],), {"notification_url": v["notification_url"]})
    headers = {"x-square-hmacsha256-signature": v.get("signature_header", v.get("expected_signature", ""))}
    if v.get("expect") == "invalid":
        with pytest.raises(SignatureError):
            await provider.verify(v["payload"].encode(), headers, 0.0)
    else:
        await provider.verify(v["payload"].encode(), headers, 0.0)


async def test_official_square_vector_body_is_the_fixture() -> None:
    v = vector("square.json")["vectors"][0]
    assert (FIXTURES / "square/webhooks.test_notification.json").read_bytes() == v["payload"].encode()


# -- Adyen -------------------------------------------------------------------------------------------


def _adyen_item(v: dict[str, Any]) -> dict[str, Any]:
    if "item" in v:
        item: dict[str, Any] = json.loads(json.dumps(v["item"]))
    else:
        item = json.loads((VECTORS / "adyen" / v["item_file"].rsplit("/", 1)[1]).read_text(encoding="utf-8"))
    item.setdefault("additionalData", {}).setdefault("hmacSignature", v["expected_hmacSignature"])
    return item


_ADYEN_ITEMS = vector("adyen.json")["item_vectors"]


@pytest.mark.parametrize("v", _ADYEN_ITEMS, ids=lambda v: f"official-{v['name'].split(' ')[0]}")
async def test_official_adyen_item_vectors(v: dict[str, Any]) -> None:
    item = _adyen_item(v)
    assert signing_string(item) == v["signing_string"]
    body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}).encode()
    provider = build("adyen", (v["hmac_key_hex"],), {})
    await provider.verify(body, {}, 0.0)
    [event] = provider.parse(body, {})
    assert event.event_type == item["eventCode"]


async def test_official_adyen_batch_every_item_must_verify() -> None:
    items = [_adyen_item(v) for v in _ADYEN_ITEMS if v["hmac_key_hex"].startswith("74F4")]
    body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]})
    provider = build("adyen", ("74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174",), {})
    await provider.verify(body.encode(), {}, 0.0)
    assert len(provider.parse(body.encode(), {})) == 4
    items[2]["additionalData"]["hmacSignature"] = items[1]["additionalData"]["hmacSignature"]
    body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": i} for i in items]})
    with pytest.raises(SignatureError, match=r"notificationItems\[2\]"):
        await provider.verify(body.encode(), {}, 0.0)


@pytest.mark.parametrize("index", [0, 1], ids=["official-python-payload", "official-java-banking"])
async def test_official_adyen_payload_vectors(index: int) -> None:
    v = vector("adyen.json")["payload_vectors"][index]
    provider = build("adyen", (v["hmac_key_hex"],), {})
    await provider.verify(v["payload"].encode(), {"hmacsignature": v["expected_signature"]}, 0.0)


# -- body-only HMAC providers (one signature header) ------------------------------------------------

_BODY_VECTORS = [
    ("official", "razorpay", "razorpay.json", "x-razorpay-signature", "secret", "expected_signature"),
    ("official", "gocardless", "gocardless.json", "webhook-signature", "secret", "expected_signature"),
    ("derived", "shopify", "shopify.json", "x-shopify-hmac-sha256", "secret", "expected_signature"),
    ("derived", "lemonsqueezy", "lemonsqueezy.json", "x-signature", "secret", "expected_signature"),
    ("derived", "woocommerce", "woocommerce.json", "x-wc-webhook-signature", "secret", "expected_signature"),
    ("derived", "checkout_com", "checkout-com.json", "cko-signature", "secret", "expected_signature"),
    ("derived", "mollie", "mollie.json", "x-mollie-signature", "secret", "expected_hexdigest"),
]


@pytest.mark.parametrize(
    ("kind", "provider_type", "file", "header", "secret_key", "signature_key"),
    _BODY_VECTORS,
    ids=[f"{kind}-{provider}" for kind, provider, *_ in _BODY_VECTORS],
)
async def test_body_hmac_vectors(
    kind: str, provider_type: str, file: str, header: str, secret_key: str, signature_key: str
) -> None:
    v = vector(file)["vectors"][0]
    if "payload" in v:
        body = v["payload"].encode()
    else:
        body = (FIXTURES / v["payload_file"].removeprefix("fixtures/")).read_bytes()
    provider = build(provider_type, (v[secret_key],), {})
    await provider.verify(body, {header: v[signature_key]}, 0.0)


async def test_official_razorpay_vector_body_includes_the_trailing_newline() -> None:
    v = vector("razorpay.json")["vectors"][0]
    assert (FIXTURES / "razorpay/payment.authorized.sdk-test.json").read_bytes() == v["payload"].encode()
    provider = build("razorpay", (v["secret"],), {})
    with pytest.raises(SignatureError):
        await provider.verify(v["payload"].encode().strip(), {"x-razorpay-signature": v["expected_signature"]}, 0.0)


async def test_official_gocardless_vector_signs_the_stripped_fixture() -> None:
    v = vector("gocardless.json")["vectors"][0]
    body = (FIXTURES / "gocardless/subscriptions.created+mandates.created.json").read_bytes()
    assert body.strip() == v["payload"].encode()
    provider = build("gocardless", (v["secret"],), {})
    await provider.verify(body.strip(), {"webhook-signature": v["expected_signature"]}, 0.0)
    assert [e.event_id for e in provider.parse(body, {})] == ["EV00BD05S5VM2T", "EV00BD05TB8K63"]


async def test_derived_shopify_vector_with_ruby_trailing_newline() -> None:
    v = vector("shopify.json")["vectors"][0]
    provider = build("shopify", (v["secret"],), {})
    await provider.verify(v["payload"].encode(), {"x-shopify-hmac-sha256": v["expected_signature"] + "\n"}, 0.0)


async def test_derived_woocommerce_secret_is_html_entity_decoded() -> None:
    v = vector("woocommerce.json")["vectors"][0]
    body = v["payload"].encode()
    signature = base64.b64encode(hmac.new(b"a&b'c", body, hashlib.sha256).digest()).decode()
    provider = build("woocommerce", ("a&amp;b&#039;c",), {})
    await provider.verify(body, {"x-wc-webhook-signature": signature}, 0.0)


async def test_derived_chargify_maxio_vector_through_generic_hmac() -> None:
    v = vector("chargify-maxio.json")["vectors"][0]
    options = {"header": "X-Chargify-Webhook-Signature-Hmac-Sha-256"}
    provider = build("generic_hmac", (v["secret"],), options)
    headers = {"x-chargify-webhook-signature-hmac-sha-256": v["expected_hmac_sha256_hex"]}
    await provider.verify(v["payload"].encode(), headers, 0.0)


# -- Recurly -------------------------------------------------------------------------------------------


async def test_official_recurly_vector() -> None:
    v = vector("recurly.json")["vectors"][0]
    sent_at = int(v["header"].split(",")[0]) / 1000
    headers = {"recurly-signature": v["header"]}
    await build("recurly", (v["secret"],), {}).verify(v["payload"].encode(), headers, sent_at)
    # "rejected as out of date with default tolerance, accepted with infinite tolerance"
    with pytest.raises(SignatureError, match="too old"):
        await build("recurly", (v["secret"],), {}).verify(v["payload"].encode(), headers, sent_at + 301)
    await build("recurly", (v["secret"],), {}, tolerance=0).verify(v["payload"].encode(), headers, sent_at + 10**6)


async def test_official_recurly_multiple_signatures_template() -> None:
    data = vector("recurly.json")["vectors"]
    v = data[0]
    timestamp, signature = v["header"].split(",")
    header = data[1]["header_template"].replace("<ts>", timestamp).replace("<valid_sig>", signature)
    provider = build("recurly", (v["secret"],), {})
    await provider.verify(v["payload"].encode(), {"recurly-signature": header}, int(timestamp) / 1000)


async def test_official_recurly_vector_body_is_the_fixture() -> None:
    v = vector("recurly.json")["vectors"][0]
    assert (FIXTURES / "recurly/account.created.json").read_bytes() == v["payload"].encode()


# -- Stripe (derived; the provider is not part of this suite but the vector file is) -----------------


async def test_derived_stripe_vector() -> None:
    v = vector("stripe.json")["vectors"][0]
    provider = build("stripe", (v["secret"],), {})
    for header in (v["header"], v["header_with_extra_bad_sig"]):
        await provider.verify(v["payload"].encode(), {"stripe-signature": header}, float(v["timestamp"]))


# -- PayPal: the official vector cannot be verified offline (its certificate is not published) -------


async def test_official_paypal_vector_structure_offline() -> None:
    """Everything of the official vector that can be checked without PayPal's certificate: the CRC32 of the
    raw body, the signed string, the certificate URL passes our allowlist, the algorithm, and a 2048-bit
    RSA signature length. The RSA check itself needs the sandbox certificate, which is not stored."""
    v = vector("paypal.json")["vectors"][0]
    body = (FIXTURES / "paypal/PAYMENT.SALE.COMPLETED.json").read_bytes()
    assert zlib.crc32(body) & 0xFFFFFFFF == v["crc32_unsigned_computed_by_us"]
    message = signed_message(v["transmission_id"], v["transmission_time"], v["webhook_id"], body)
    assert message.decode() == v["signed_string_computed_by_us"]
    check_cert_url(v["cert_url"])
    assert v["auth_algo"] == "SHA256withRSA"
    assert len(base64.b64decode(v["transmission_sig"], validate=True)) == 256


async def test_official_paypal_vector_does_not_verify_with_another_key() -> None:
    """The vector's real signature against our locally generated test certificate must be refused."""
    from tests.providers.signing import PAYPAL_TEST_CERT_URL

    v = vector("paypal.json")["vectors"][0]
    body = (FIXTURES / "paypal/PAYMENT.SALE.COMPLETED.json").read_bytes()
    headers = {
        "paypal-transmission-id": v["transmission_id"],
        "paypal-transmission-time": v["transmission_time"],
        "paypal-transmission-sig": v["transmission_sig"],
        "paypal-cert-url": PAYPAL_TEST_CERT_URL,
        "paypal-auth-algo": v["auth_algo"],
    }
    with pytest.raises(SignatureError, match="does not verify"):
        await build("paypal", (v["webhook_id"],), {}).verify(body, headers, 1_431_963_913.0)


# -- vectors without a provider in the bridge ------------------------------------------------------


@pytest.mark.parametrize(
    "file",
    ["braintree.json", "recharge.json"],
    ids=["official-braintree-challenge", "derived-recharge-legacy"],
)
def test_vectors_without_a_provider(file: str) -> None:
    """Braintree posts form fields (bt_signature/bt_payload, base64 XML, HMAC-SHA1 keyed with SHA1 of the
    private key) and Recharge's legacy scheme is a plain SHA-256 of secret+body (unconfirmed): neither is a
    provider here. The vectors are still checked against their documented algorithms."""
    data = vector(file)
    if file == "braintree.json":
        v = data["vectors"][0]
        key = hashlib.sha1(v["private_key"].encode()).digest()
        digest = hmac.new(key, v["challenge"].encode(), hashlib.sha1).hexdigest()
        assert f"{v['public_key']}|{digest}" == v["expected_response"]
    else:
        v = data["vectors"][0]
        assert hashlib.sha256((v["client_secret"] + v["payload"]).encode()).hexdigest() == v["expected_signature"]
