"""Signing cases of the app-store and billing providers, added to `cases.CASES` (see cases.py for `Case`).

What "secret" means where the scheme has none: Apple, the test PKI that signs ("test" is Apple's published test
chain, "other" a foreign chain with Apple's structure and OIDs) and whose root the source trusts; Google Play,
the RSA key that signs the push token and that Google's key set (the injected fetch) holds; RevenueCat, the
Authorization header value. Bodies whose signature lives inside them (Apple's JWS, Braintree's form) get their
own ways to drop, garble and tamper with it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

Request = tuple[bytes, dict[str, str]]

GOOGLE_OPTIONS = {
    "audience": "https://bridge.example/webhooks/google_play",
    "service_account_email": "rtdn-push@example-project.iam.gserviceaccount.com",
}
APPLE_OPTIONS = {"bundle_id": "com.example", "environment": "Sandbox"}
BRAINTREE_OPTIONS = {"public_key": "integration_public_key"}
_HEX = ("garbage", "00", "zz" * 32)
_B64 = ("garbage!", "AAAA", "====")


# -- Apple: the signature is the JWS in the body ---------------------------------------------------------


def _apple_token(body: bytes) -> str:
    token: str = json.loads(body)["signedPayload"]
    return token


def apple_drop(body: bytes, headers: dict[str, str]) -> Request:
    return json.dumps({"notSignedPayload": _apple_token(body)}).encode(), headers


def apple_garble(body: bytes, headers: dict[str, str], value: str) -> Request:
    """The JWS with its signature segment replaced by `value` (or the whole JWS when `value` has a dot)."""
    head, payload, _ = _apple_token(body).split(".")
    token = value if "." in value else f"{head}.{payload}.{value}"
    return json.dumps({"signedPayload": token}).encode(), headers


def apple_tamper(body: bytes) -> bytes:
    """The same signature over a changed payload (signedDate + 1)."""
    head, payload, signature = _apple_token(body).split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded["signedDate"] += 1
    changed = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return json.dumps({"signedPayload": f"{head}.{changed}.{signature}"}).encode()


# -- Braintree: the signature is a form field ----------------------------------------------------------


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))


def braintree_drop(body: bytes, headers: dict[str, str]) -> Request:
    fields = _form(body)
    fields.pop("bt_signature")
    return urlencode(fields).encode(), headers


def braintree_garble(body: bytes, headers: dict[str, str], value: str) -> Request:
    return urlencode({**_form(body), "bt_signature": value}).encode(), headers


def braintree_tamper(body: bytes) -> bytes:
    fields = _form(body)
    payload = fields["bt_payload"]
    fields["bt_payload"] = payload[:40] + ("A" if payload[40] != "A" else "B") + payload[41:]
    return urlencode(fields).encode()


# -- Mercado Pago: only data.id of the body is signed --------------------------------------------------------


def mercadopago_tamper(body: bytes) -> bytes:
    document = json.loads(body)
    document["data"]["id"] = str(document["data"]["id"]) + "0"
    return json.dumps(document).encode()


def cases(case: Callable[..., Any], fixture: Callable[[str], bytes], vector: Callable[[str], Any]) -> list[Any]:
    return [
        case(
            "paystack",
            "paystack",
            fixture("paystack/charge.success.json"),
            "sk_test_bridge_fixture_secret",
            "sk_test_bridge_old_secret",
            "x-paystack-signature",
            (*_HEX, "0" * 128 + " "),
        ),
        case(
            "fastspring",
            "fastspring",
            fixture("fastspring/return.created.json"),
            "fs_test_hmac_secret",
            "fs_old_hmac_secret",
            "x-fs-signature",
            _B64,
        ),
        case(
            "maxio",
            "maxio",
            fixture("maxio/payment_success.form"),
            "site_shared_key",
            "old_site_shared_key",
            "x-chargify-webhook-signature-hmac-sha-256",
            _HEX,
        ),
        case(
            "recharge",
            "recharge",
            vector("recharge.json")["vectors"][0]["payload"].encode(),
            "recharge_client_secret",
            "old_client_secret",
            "x-recharge-hmac-sha256",
            _HEX,
        ),
        case(
            "mercadopago",
            "mercadopago",
            fixture("mercadopago/payment.created.json"),
            "mp_test_webhook_secret",
            "mp_old_webhook_secret",
            "x-signature",
            ("garbage", "ts=abc,v1=" + "00" * 32, "v1=" + "00" * 32, "ts=1700000000", "ts=1700000000,v1="),
            timestamped=True,
            tolerance=300.0,
            tamper=mercadopago_tamper,
        ),
        case(
            "revenuecat",
            "revenuecat",
            fixture("revenuecat/INITIAL_PURCHASE.json"),
            "Bearer rc_test_webhook_auth",
            "Bearer rc_old_webhook_auth",
            "authorization",
            ("garbage", "Bearer wrong", "bearer rc_test_webhook_auth", "Bearer rc_test_webhook_auth "),
            body_signed=False,
        ),
        case(
            "braintree",
            "braintree",
            fixture("braintree/subscription_charged_successfully.form"),
            "integration_private_key",
            "other_private_key",
            "bt_signature",
            (
                "garbage",
                "integration_public_key|00",
                "other_public_key|" + "0" * 40,
                "integration_public_key|" + "z" * 40,
            ),
            options=BRAINTREE_OPTIONS,
            drop=braintree_drop,
            garble=braintree_garble,
            tamper=braintree_tamper,
        ),
        case(
            "apple_app_store",
            "apple_app_store",
            fixture("apple_app_store/SUBSCRIBED.INITIAL_BUY.json"),
            "test",
            "other",
            "signedpayload",
            ("garbage", "AAAA", "a.b.c", "a.b.c.d"),
            options=APPLE_OPTIONS,
            drop=apple_drop,
            garble=apple_garble,
            tamper=apple_tamper,
        ),
        case(
            "google_play",
            "google_play",
            fixture("google_play/SUBSCRIPTION_PURCHASED.json"),
            "google-key-1",
            "google-key-2",
            "authorization",
            ("garbage", "Bearer", "Bearer a.b.c", "Basic YTpi", "Bearer " + "x" * 5000),
            options=GOOGLE_OPTIONS,
            body_signed=False,
        ),
    ]
