"""Sign a webhook body the way each provider's sender does, for tests at the provider and HTTP level.

    headers = sign("paddle", body, secret="pdl_ntfset_…", now=clock.now())
    body, headers = signed_request("adyen", body, secret=HMAC_KEY_HEX, now=…)   # Adyen signs inside the body

`secret` is what the source configures in `secrets:` (Chargebee: the Basic-auth password; PayPal: ignored,
the local test key signs). `options` are the source's provider options (Square `notification_url`, PayPal
`webhook_id`, generic_hmac's scheme, Chargebee `username`, ...). `event_type` / `event_id` fill the headers
that carry them where a provider puts them in headers (Shopify topic and webhook id, WooCommerce topic and
delivery id, Lemon Squeezy event name, Razorpay event id, Standard Webhooks message id, ...); otherwise a
stable id is derived from the body and `now`. Header names are spelled as the senders spell them; the bridge
lower-cases them (see `lower`).

PayPal: `paypal_test_key()` is a locally generated RSA key, `paypal_test_cert_pem()` a self-signed
certificate for it named like PayPal's signing certificate, and `paypal_test_fetcher` the `fetch_cert`
to construct the provider with (it serves that certificate for PAYPAL_TEST_CERT_URL only). Where the app
builds the provider itself (HTTP-level tests), replace the default fetcher before the app is created:
`monkeypatch.setattr("bridge.providers.paypal.fetch_cert_https", paypal_test_fetcher)`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.providers import signing_billing

PAYPAL_TEST_CERT_URL = "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-bridge-local-test"
PAYPAL_TEST_SUBJECT = "messageverificationcerts.sandbox.paypal.com"


# -- PayPal test key material --------------------------------------------------------------------


@cache
def paypal_test_key() -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key generated once per test session (never a real PayPal key)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def paypal_test_cert_pem(subject: str = PAYPAL_TEST_SUBJECT) -> bytes:
    """A self-signed PEM certificate for `paypal_test_key()`, valid 2000-2100, CN=`subject`."""
    key = paypal_test_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2100, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


async def paypal_test_fetcher(url: str) -> bytes:
    """`fetch_cert` for PayPalProvider in tests: serves the test certificate, refuses any other URL."""
    if url != PAYPAL_TEST_CERT_URL:
        raise AssertionError(f"unexpected certificate fetch: {url}")
    return paypal_test_cert_pem()


def paypal_signature(transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> str:
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()
    return base64.b64encode(paypal_test_key().sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def crc32_forgery(template: bytes, target_crc: int, marker: bytes = b"@@@@@@@@") -> bytes:
    """`template` with its 8-byte `marker` replaced by printable, JSON-string-safe bytes chosen so that the CRC32
    of the result is `target_crc`: what anyone holding one captured PayPal delivery can do, since PayPal signs
    the body only through its CRC32. CRC32 is affine over GF(2), so 4 of the bytes are solved for exactly (a
    32x32 linear system); the other 4 are varied until those come out printable."""
    start = template.index(marker)
    allowed = set(range(0x20, 0x7F)) - {ord('"'), ord("\\")}
    letters = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for attempt in range(26**4):
        nonce = bytes(letters[(attempt // 26**k) % 26] for k in range(4))

        def crc(patch: bytes, nonce: bytes = nonce) -> int:
            return zlib.crc32(template[:start] + nonce + patch + template[start + 8 :]) & 0xFFFFFFFF

        base = crc(b"\0\0\0\0")
        columns = [crc(int(1 << bit).to_bytes(4, "little")) ^ base for bit in range(32)]
        solution = _solve_gf2(columns, target_crc ^ base)
        if solution is None:
            continue
        patch = solution.to_bytes(4, "little")
        if all(byte in allowed for byte in patch):
            forged = template[:start] + nonce + patch + template[start + 8 :]
            assert zlib.crc32(forged) & 0xFFFFFFFF == target_crc
            return forged
    raise AssertionError("no printable CRC32 patch found")


def _solve_gf2(columns: list[int], target: int) -> int | None:
    """x with XOR of columns[i] for every bit i set in x == target (Gaussian elimination over GF(2))."""
    rows = [(column, 1 << index) for index, column in enumerate(columns)]  # (value, which bits of x)
    basis: list[tuple[int, int]] = []
    for value, combo in rows:
        for pivot_value, pivot_combo in basis:
            if value ^ pivot_value < value:
                value, combo = value ^ pivot_value, combo ^ pivot_combo
        if value:
            basis.append((value, combo))
            basis.sort(reverse=True)
    solution = 0
    for pivot_value, pivot_combo in basis:
        if target ^ pivot_value < target:
            target, solution = target ^ pivot_value, solution ^ pivot_combo
    return solution if target == 0 else None


# -- helpers -------------------------------------------------------------------------------------


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names lower-cased, as the bridge hands them to a provider."""
    return {name.lower(): value for name, value in headers.items()}


def _hmac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _derived_id(body: bytes, now: float) -> str:
    return str(uuid.UUID(hashlib.sha256(body + str(now).encode()).hexdigest()[:32]))


def _rfc3339(now: float) -> str:
    return datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def adyen_item_signature(item: Mapping[str, Any], key_hex: str) -> str:
    """Adyen's hmacSignature of one NotificationRequestItem."""
    amount = item.get("amount") or {}

    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    fields = [item.get(k) for k in ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")]
    fields += [amount.get("value"), amount.get("currency"), item.get("eventCode"), item.get("success")]
    return _b64(_hmac(bytes.fromhex(key_hex), ":".join(text(f) for f in fields).encode()))


def adyen_signed_body(body: bytes, key_hex: str) -> bytes:
    """A standard notification body with every item's additionalData.hmacSignature (re)computed."""
    document = json.loads(body)
    for entry in document["notificationItems"]:
        item = entry["NotificationRequestItem"]
        item.setdefault("additionalData", {})["hmacSignature"] = adyen_item_signature(item, key_hex)
    return json.dumps(document).encode()


# -- the signers ---------------------------------------------------------------------------------


def signed_request(
    provider_type: str,
    body: bytes,
    *,
    secret: str,
    now: float,
    options: Mapping[str, Any] | None = None,
    event_type: str | None = None,
    event_id: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) as the provider's sender would POST them. Adyen's standard notifications, Braintree's form
    and Apple's signed notifications change the body (their signatures live inside it)."""
    if provider_type == "adyen" and b"notificationItems" in body:
        return adyen_signed_body(body, secret), {"Content-Type": "application/json"}
    more = signing_billing.signed(
        provider_type, body, secret=secret, now=now, options=options or {}, event_type=event_type, event_id=event_id
    )
    if more is not None:
        return more
    return body, sign(
        provider_type, body, secret=secret, now=now, options=options, event_type=event_type, event_id=event_id
    )


def sign(
    provider_type: str,
    body: bytes,
    *,
    secret: str,
    now: float,
    options: Mapping[str, Any] | None = None,
    event_type: str | None = None,
    event_id: str | None = None,
) -> dict[str, str]:
    """The request headers a real sender of `provider_type` would send with `body`."""
    options = dict(options or {})
    key = secret.encode()
    ts = int(now)
    ident = event_id or _derived_id(body, now)
    headers = {"Content-Type": "application/json"}
    if provider_type == "stripe":
        headers["Stripe-Signature"] = f"t={ts},v1={_hmac(key, f'{ts}.'.encode() + body).hex()}"
    elif provider_type == "shopify":
        headers |= {
            "X-Shopify-Hmac-Sha256": _b64(_hmac(key, body)),
            "X-Shopify-Topic": event_type or "orders/create",
            "X-Shopify-Webhook-Id": ident,
            "X-Shopify-Shop-Domain": "bridge-test.myshopify.com",
            "X-Shopify-API-Version": "2025-01",
            "X-Shopify-Triggered-At": _rfc3339(now),
        }
    elif provider_type == "paddle":
        headers["Paddle-Signature"] = f"ts={ts};h1={_hmac(key, f'{ts}:'.encode() + body).hex()}"
    elif provider_type == "chargebee":
        credentials = f"{options.get('username', 'chargebee')}:{secret}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(credentials).decode()}"
    elif provider_type == "recurly":
        ms = int(now * 1000)
        headers["Recurly-Signature"] = f"{ms},{_hmac(key, f'{ms}.'.encode() + body).hex()}"
    elif provider_type == "lemonsqueezy":
        name = event_type or json.loads(body).get("meta", {}).get("event_name", "order_created")
        headers |= {"X-Signature": _hmac(key, body).hex(), "X-Event-Name": name}
    elif provider_type == "square":
        url = str(options["notification_url"]).encode()
        headers["X-Square-HmacSha256-Signature"] = _b64(_hmac(key, url + body))
    elif provider_type == "razorpay":
        headers |= {"X-Razorpay-Signature": _hmac(key, body).hex(), "X-Razorpay-Event-Id": ident}
    elif provider_type == "gocardless":
        headers |= {"Webhook-Signature": _hmac(key, body).hex(), "Origin": "https://api.gocardless.com"}
    elif provider_type == "adyen":
        if b"notificationItems" in body:
            raise ValueError("Adyen standard notifications are signed inside the body: use signed_request()")
        headers["HmacSignature"] = _b64(_hmac(bytes.fromhex(secret), body))
    elif provider_type == "paypal":
        time = _rfc3339(now)
        headers |= {
            "PAYPAL-TRANSMISSION-ID": ident,
            "PAYPAL-TRANSMISSION-TIME": time,
            "PAYPAL-TRANSMISSION-SIG": paypal_signature(ident, time, str(options["webhook_id"]), body),
            "PAYPAL-CERT-URL": PAYPAL_TEST_CERT_URL,
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        }
    elif provider_type == "standard_webhooks":
        if options.get("secret_encoding") == "raw":
            sw_key = key
        else:
            sw_key = base64.b64decode(secret.removeprefix("whsec_") + "==")
        msg_id = event_id or f"msg_{ident.replace('-', '')}"
        signature = _b64(_hmac(sw_key, f"{msg_id}.{ts}.".encode() + body))
        headers |= {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": f"v1,{signature}"}
    elif provider_type == "woocommerce":
        topic = event_type or "order.created"
        headers |= {
            "X-WC-Webhook-Source": "https://shop.example/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": topic.partition(".")[0],
            "X-WC-Webhook-Event": topic.partition(".")[2],
            "X-WC-Webhook-Signature": _b64(_hmac(key, body)),
            "X-WC-Webhook-ID": "1",
            "X-WC-Webhook-Delivery-ID": event_id or hashlib.md5(f"1{ts}".encode()).hexdigest(),
        }
    elif provider_type == "checkout_com":
        headers["Cko-Signature"] = _hmac(key, body).hex()
        if options.get("authorization"):
            headers["Authorization"] = str(options["authorization"])
    elif provider_type == "mollie":
        headers["X-Mollie-Signature"] = _hmac(key, body).hex()
    elif provider_type == "generic_hmac":
        headers |= _sign_generic(body, key, ts, ident, options, event_type)
    else:
        more = signing_billing.signed(
            provider_type, body, secret=secret, now=now, options=options, event_type=event_type, event_id=event_id
        )
        if more is None:
            raise ValueError(f"no signer for provider type {provider_type!r}")
        headers = more[1]
    return headers


def _sign_generic(
    body: bytes, key: bytes, ts: int, ident: str, options: Mapping[str, Any], event_type: str | None
) -> dict[str, str]:
    headers: dict[str, str] = {}
    timestamp = str(ts * 1000 if options.get("timestamp_unit") == "ms" else ts)
    values = {"body": body, "timestamp": timestamp.encode(), "id": ident.encode()}
    template = str(options.get("signed_content", "{body}"))
    message = b""
    rest = template
    while rest:
        start = rest.find("{")
        if start < 0:
            message += rest.encode()
            break
        end = rest.index("}", start)
        message += rest[:start].encode() + values[rest[start + 1 : end]]
        rest = rest[end + 1 :]
    digest = _hmac(key, message, str(options.get("algorithm", "sha256")))
    encoded = digest.hex() if options.get("encoding", "hex") == "hex" else _b64(digest)
    headers[str(options["header"])] = f"{options.get('prefix', '')}{encoded}"
    if options.get("timestamp_header"):
        headers[str(options["timestamp_header"])] = timestamp
    if options.get("id_header"):
        headers[str(options["id_header"])] = ident
    if options.get("type_header"):
        headers[str(options["type_header"])] = event_type or "webhook"
    return headers
