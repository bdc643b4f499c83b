"""Demo sources of the payment providers: Adyen, Checkout.com, Mercado Pago, PayPal, Paystack, Razorpay and
Square. Each signs as in its provider module's docstring (and /work/shared/design/PROVIDERS.md); the secrets
are generated for the run.

PayPal has no shared secret: it signs with RSA and the bridge verifies against the certificate named by
`PAYPAL-CERT-URL`, fetched from PayPal. The demo signs with an RSA key generated for this run and hands the
provider a fetch that serves a certificate for that key (with PayPal's subject name) at a PayPal certificate
URL, through the provider's constructor (`fetch_cert`): nothing about it can be configured in bridge.yaml.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bridge.config import Settings
from bridge.demo_sources.base import (
    JSON,
    DemoSource,
    Secret,
    Signer,
    digest,
    headers_of,
    hmac_source,
    options_of,
    samples_of,
)
from bridge.demo_sources.certs import certificate
from bridge.providers.adyen import notification_items, signing_string
from bridge.providers.base import Provider
from bridge.providers.mercadopago import data_id, manifest
from bridge.providers.paypal import PayPalProvider, signed_message


def paystack() -> DemoSource:
    return hmac_source("paystack", "x-paystack-signature", "hex", algorithm="sha512")


def checkout_com() -> DemoSource:
    return hmac_source("checkout_com", "Cko-Signature", "hex")


def razorpay() -> DemoSource:
    def event_id(
        case: str, body: bytes
    ) -> dict[str, str]:  # Razorpay's dedup header, the same on every retry of an event
        return {"x-razorpay-event-id": "evt_" + hashlib.sha256(f"razorpay-demo/{case}".encode()).hexdigest()[:14]}

    return hmac_source("razorpay", "X-Razorpay-Signature", "hex", extra=event_id)


def square() -> DemoSource:
    provider = "square"
    url = str(options_of(provider)["notification_url"])  # signed before the body, as registered with Square
    secret = Secret.new(provider)

    def signer(key: str) -> Signer:
        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            signature = base64.b64encode(digest(key, url.encode() + body)).decode()
            return body, {**JSON, "x-square-hmacsha256-signature": signature}

        return sign

    source = secret.source(notification_url=url)
    return DemoSource(provider, source, secret.env, signer(secret.value), signer(secret.forged), samples_of(provider))


def mercadopago() -> DemoSource:
    provider = "mercadopago"
    secret, samples = Secret.new(provider), samples_of(provider)

    def signer(key: str) -> Signer:
        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            request_id = headers_of(provider, case).get("x-request-id") or str(uuid.uuid4())
            ts = str(int(now))
            v1 = digest(key, manifest(data_id(body), request_id, ts)).hex()
            return body, {**JSON, "x-signature": f"ts={ts},v1={v1}", "x-request-id": request_id}

        return sign

    return DemoSource(provider, secret.source(), secret.env, signer(secret.value), signer(secret.forged), samples)


def adyen() -> DemoSource:
    """Adyen signs inside the body: each notification item's `additionalData.hmacSignature`, under a hex key."""
    secret = Secret.new("adyen", secrets.token_hex(32), secrets.token_hex(32))

    def signer(key: str) -> Signer:
        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            document = json.loads(body)
            for item in notification_items(document):
                signature = base64.b64encode(digest(bytes.fromhex(key), signing_string(item).encode())).decode()
                item.setdefault("additionalData", {})["hmacSignature"] = signature
            return json.dumps(document).encode(), JSON

        return sign

    note = "each notification item's hmacSignature computed again under the key made for this run"
    return DemoSource(
        "adyen", secret.source(), secret.env, signer(secret.value), signer(secret.forged), samples_of("adyen"), note
    )


CERT_URL = "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-bridge-demo"
CERT_SUBJECT = "messageverificationcerts.sandbox.paypal.com"


class DemoPayPalKey:
    """An RSA key and a certificate for it under PayPal's subject name, generated for one demo run."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = certificate(CERT_SUBJECT, CERT_SUBJECT, self.key.public_key(), self.key, False)
        self.pem = cert.public_bytes(serialization.Encoding.PEM)

    async def fetch(self, url: str) -> bytes:
        if url != CERT_URL:
            raise ValueError(f"unexpected certificate URL {url}")
        return self.pem

    def signer(self, webhook_id: str) -> Signer:
        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            transmission_id = str(uuid.uuid4())  # a new transmission for every delivery, as PayPal sends
            sent = datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            message = signed_message(transmission_id, sent, webhook_id, body)
            signature = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
            return body, {
                **JSON,
                "PAYPAL-TRANSMISSION-ID": transmission_id,
                "PAYPAL-TRANSMISSION-TIME": sent,
                "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
                "PAYPAL-CERT-URL": CERT_URL,
                "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            }

        return sign


def paypal() -> DemoSource:
    provider = "paypal"
    key, forger = DemoPayPalKey(), DemoPayPalKey()
    webhook_id = str(options_of(provider)["webhook_id"])
    source: dict[str, Any] = {"provider": provider, "webhook_id": webhook_id}

    def build(settings: Settings) -> Provider:
        return PayPalProvider(settings.sources[provider], fetch_cert=key.fetch)

    note = "signed with a key made for this run, whose certificate is served as PayPal's"
    sign, forge = key.signer(webhook_id), forger.signer(webhook_id)
    return DemoSource(provider, source, {}, sign, forge, samples_of(provider), note, build)


SOURCES: dict[str, Callable[[], DemoSource]] = {
    "adyen": adyen,
    "checkout_com": checkout_com,
    "mercadopago": mercadopago,
    "paypal": paypal,
    "paystack": paystack,
    "razorpay": razorpay,
    "square": square,
}
