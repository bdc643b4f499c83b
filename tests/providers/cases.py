"""One signing scenario per provider (real fixture bodies) and a way to build the provider for it.

A `Case` says how the provider's sender signs (`tests/providers/signing.py`), which request part carries the
signature (to remove or garble it) and whether the scheme has a timestamp. `build()` makes the provider with
a given list of "secrets": for Chargebee they are the Basic-auth passwords, for PayPal the configured
`webhook_id` (PayPal has no shared secret; a different webhook id is its "wrong secret"), for Apple the test
PKIs whose roots are trusted and for Google Play the test keys in Google's key set (see billing_cases.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.providers import provider_class
from bridge.providers.apple_app_store import AppleAppStoreProvider
from bridge.providers.base import Provider, SourceSettings
from bridge.providers.google_play import GooglePlayProvider
from bridge.providers.paypal import PayPalProvider
from tests.providers import billing_cases
from tests.providers.apple_signing import root_der
from tests.providers.signing import lower, paypal_test_fetcher, signed_request
from tests.providers.signing_billing import google_fetcher

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
VECTORS = Path(__file__).resolve().parent / "vectors"
NOW = 1_700_000_000.0

Request = tuple[bytes, dict[str, str]]


def fixture(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def vector(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


def _drop_header(name: str) -> Callable[[bytes, dict[str, str]], Request]:
    def drop(body: bytes, headers: dict[str, str]) -> Request:
        return body, {k: v for k, v in headers.items() if k != name}

    return drop


def _set_header(name: str) -> Callable[[bytes, dict[str, str], str], Request]:
    def garble(body: bytes, headers: dict[str, str], value: str) -> Request:
        return body, {**headers, name: value}

    return garble


def _adyen_items(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(body)
    for entry in document["notificationItems"]:
        change(entry["NotificationRequestItem"]["additionalData"])
    return json.dumps(document).encode()


def _adyen_drop(body: bytes, headers: dict[str, str]) -> Request:
    return _adyen_items(body, lambda additional: additional.pop("hmacSignature")), headers


def _adyen_garble(body: bytes, headers: dict[str, str], value: str) -> Request:
    return _adyen_items(body, lambda additional: additional.update(hmacSignature=value)), headers


def _adyen_tamper(body: bytes) -> bytes:
    document = json.loads(body)
    document["notificationItems"][0]["NotificationRequestItem"]["amount"]["value"] += 1
    return json.dumps(document).encode()


def _tamper(body: bytes) -> bytes:
    return body.replace(b"}", b" }", 1) if b"}" in body else body + b" "


@dataclass(frozen=True)
class Case:
    id: str
    type: str
    body: bytes
    secret: str
    other_secret: str
    header: str  # lower-case header with the signature (or the Authorization credentials)
    garbles: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    timestamped: bool = False
    tolerance: float | None = None  # tolerance_seconds to configure (None: the provider's default)
    body_signed: bool = True
    rotation: bool = True
    drop: Callable[[bytes, dict[str, str]], Request] | None = None
    garble: Callable[[bytes, dict[str, str], str], Request] | None = None
    tamper: Callable[[bytes], bytes] = _tamper

    def signing_options(self, secret: str) -> dict[str, Any]:
        options = dict(self.options)
        if self.type == "paypal":
            options["webhook_id"] = secret
        return options

    def request(self, secret: str | None = None, now: float = NOW) -> Request:
        """(body, lower-cased headers) as the sender would send them, signed with `secret`."""
        key = self.secret if secret is None else secret
        body, headers = signed_request(self.type, self.body, secret=key, now=now, options=self.signing_options(key))
        return body, lower(headers)

    def without_signature(self, body: bytes, headers: dict[str, str]) -> Request:
        return (self.drop or _drop_header(self.header))(body, headers)

    def garbled(self, body: bytes, headers: dict[str, str], value: str) -> Request:
        return (self.garble or _set_header(self.header))(body, headers, value)

    def build(self, secrets: tuple[str, ...] | None = None, tolerance: float | None = None) -> Provider:
        configured = (self.secret,) if secrets is None else secrets
        return build(self.type, configured, self.options, self.tolerance if tolerance is None else tolerance)


def build(
    provider_type: str, secrets: tuple[str, ...], options: Mapping[str, Any], tolerance: float | None = None
) -> Provider:
    """The provider for a source with these secrets (Chargebee: passwords; PayPal: its webhook_id)."""
    options = dict(options)
    if provider_type == "chargebee":
        options["password"] = list(secrets)
        secrets = ()
    if provider_type == "paypal":
        options["webhook_id"] = secrets[0]
        settings = SourceSettings("paypal", "paypal", (), tolerance, options=options)
        return PayPalProvider(settings, fetch_cert=paypal_test_fetcher)
    if provider_type == "apple_app_store":  # "secrets" name the test PKIs whose roots are trusted
        settings = SourceSettings("apple", provider_type, (), tolerance, options=options)
        return AppleAppStoreProvider(settings, trusted_roots=[root_der(name) for name in secrets])
    if provider_type == "google_play":  # "secrets" name the test keys Google's key set holds
        settings = SourceSettings("google", provider_type, (), tolerance, options=options)
        return GooglePlayProvider(settings, fetch_keys=google_fetcher(secrets))
    settings = SourceSettings(provider_type, provider_type, secrets, tolerance, options=options)
    return provider_class(provider_type)(settings)


_HEX_GARBLES = ("garbage", "00", "zz" * 32)
_B64_GARBLES = ("garbage!", "AAAA", "====")
_SW = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_GENERIC_FULL = {
    "header": "X-Acme-Signature",
    "algorithm": "sha512",
    "encoding": "base64",
    "prefix": "sha512=",
    "signed_content": "{timestamp}.{id}.{body}",
    "timestamp_header": "X-Acme-Timestamp",
    "id_header": "X-Acme-Delivery",
    "type_header": "X-Acme-Event",
}

CASES = [
    Case(
        "stripe",
        "stripe",
        b'{"id":"evt_bridge_test","object":"event","type":"plan.created","created":1700000000,"data":{"object":{}}}',
        "whsec_test_secret",
        "whsec_other_secret",
        "stripe-signature",
        ("garbage", "t=abc,v1=00", "v1=" + "00" * 32, "t=1700000000", "t=1700000000,v0=" + "00" * 32),
        timestamped=True,
    ),
    Case(
        "shopify",
        "shopify",
        fixture("shopify/orders-create.json"),
        "shpss_client_secret",
        "shpss_old_secret",
        "x-shopify-hmac-sha256",
        _B64_GARBLES,
    ),
    Case(
        "paddle",
        "paddle",
        fixture("paddle/customer.created.json"),
        "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I",
        "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_otherotherotherotherotherother",
        "paddle-signature",
        ("garbage", "ts=abc;h1=" + "00" * 32, "h1=" + "00" * 32, "ts=1700000000", "ts=1700000000;h1="),
        timestamped=True,
    ),
    Case(
        "chargebee",
        "chargebee",
        b'{"id":"ev_derived_test","event_type":"subscription_created","content":{}}',
        "basic-auth-password",
        "another-password",
        "authorization",
        ("garbage", "Bearer basic-auth-password", "Basic !!!", "Basic bm9jb2xvbg==", "Basic "),
        options={"username": "chargebee"},
        body_signed=False,
    ),
    Case(
        "recurly",
        "recurly",
        fixture("recurly/account.created.json"),
        "354fab5bd35f5a0d50845ee7e30165244468b13c2c343f104e4e730a59326d9d",
        "0000fab5bd35f5a0d50845ee7e30165244468b13c2c343f104e4e730a5930000",
        "recurly-signature",
        ("garbage", "abc," + "00" * 32, "1700000000000", "1700000000000,", ",,"),
        timestamped=True,
    ),
    Case(
        "lemonsqueezy",
        "lemonsqueezy",
        fixture("lemonsqueezy/order_created.json"),
        "test_signing_secret",
        "old_signing_secret",
        "x-signature",
        _HEX_GARBLES,
    ),
    Case(
        "square",
        "square",
        fixture("square/webhooks.test_notification.json"),
        "Ibxx_5AKakO-3qeNVR61Dw",
        "MCmhFRxGX82xMwg5FsaoQA",
        "x-square-hmacsha256-signature",
        _B64_GARBLES,
        options={"notification_url": "https://bridge.example/webhooks/square"},
    ),
    Case(
        "razorpay",
        "razorpay",
        fixture("razorpay/payment.captured.json"),
        "key_secret",
        "old_key_secret",
        "x-razorpay-signature",
        _HEX_GARBLES,
    ),
    Case(
        "gocardless",
        "gocardless",
        fixture("gocardless/subscriptions.created+mandates.created.json"),
        "ED7D658C-D8EB-4941-948B-3973214F2D49",
        "11111111-D8EB-4941-948B-3973214F2D49",
        "webhook-signature",
        _HEX_GARBLES,
    ),
    Case(
        "adyen",
        "adyen",
        fixture("adyen/AUTHORISATION.json"),
        "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174",
        "hmacsignature",
        ("garbage", "", "AAAA"),
        drop=_adyen_drop,
        garble=_adyen_garble,
        tamper=_adyen_tamper,
    ),
    Case(
        "adyen-banking",
        "adyen",
        vector("adyen.json")["payload_vectors"][1]["payload"].encode(),
        "D7DD5BA6146493707BF0BE7496F6404EC7A63616B7158EC927B9F54BB436765F",
        "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        "hmacsignature",
        _B64_GARBLES,
    ),
    Case(
        "paypal",
        "paypal",
        fixture("paypal/PAYMENT.SALE.COMPLETED.json"),
        "4JH86294D6297924G",
        "WEBHOOK_ID",
        "paypal-transmission-sig",
        ("!!!not base64", "AAAA", "dGhpcyBpcyBub3QgYSBzaWduYXR1cmU="),
        timestamped=True,
        tolerance=300.0,
        rotation=False,
    ),
    Case(
        "standard_webhooks",
        "standard_webhooks",
        fixture("standard_webhooks/contact.created.signed-body.json"),
        _SW,
        "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==",
        "webhook-signature",
        ("garbage", "v1", "v1,", "v1,!!!", "v2," + "A" * 44, "v1a," + "A" * 88),
        timestamped=True,
    ),
    Case(
        "standard_webhooks-polar",
        "standard_webhooks",
        fixture("standard_webhooks/example.event.json"),
        "polar_whs_rawsecretvalue",
        "polar_whs_oldsecretvalue",
        "webhook-signature",
        ("garbage", "v1,AAAA"),
        options={"secret_encoding": "raw"},
        timestamped=True,
    ),
    Case(
        "woocommerce",
        "woocommerce",
        vector("woocommerce.json")["vectors"][0]["payload"].encode(),
        "wc_secret",
        "wc_old_secret",
        "x-wc-webhook-signature",
        _B64_GARBLES,
    ),
    Case(
        "checkout_com",
        "checkout_com",
        vector("checkout-com.json")["vectors"][0]["payload"].encode(),
        "ck_sig_key",
        "ck_old_key",
        "cko-signature",
        _HEX_GARBLES,
    ),
    Case(
        "mollie",
        "mollie",
        vector("mollie.json")["vectors"][0]["payload"].encode(),
        "mollie_shared_secret",
        "mollie_old_secret",
        "x-mollie-signature",
        (*_HEX_GARBLES, "sha256="),
    ),
    Case(
        "generic_hmac",
        "generic_hmac",
        fixture("razorpay/payment.captured.json"),
        "generic-secret",
        "generic-old-secret",
        "x-hub-signature",
        _HEX_GARBLES,
        options={"header": "X-Hub-Signature", "id_path": "payload.payment.entity.id", "type_path": "event"},
    ),
    Case(
        "generic_hmac-timestamped",
        "generic_hmac",
        fixture("paddle/customer.created.json"),
        "generic-secret",
        "generic-old-secret",
        "x-acme-signature",
        ("garbage", "sha512=garbage", "sha512=", "sha256=" + "A" * 88),
        options=_GENERIC_FULL,
        timestamped=True,
    ),
]
CASES += billing_cases.cases(Case, fixture, vector)
CASE_IDS = [case.id for case in CASES]
