"""PayPal REST webhooks: RSA `SHA256withRSA` over
`f"{PAYPAL-TRANSMISSION-ID}|{PAYPAL-TRANSMISSION-TIME}|{webhook_id}|{crc32(raw body) as unsigned decimal}"`,
signature base64 in `PAYPAL-TRANSMISSION-SIG`, verified with the X.509 certificate named by
`PAYPAL-CERT-URL`. `webhook_id` is the ID PayPal shows for the webhook (option, required; PayPal's
simulator signs mock events with the literal `WEBHOOK_ID`). There is no shared secret.

The certificate URL comes from the request, so it is trusted only when it is `https://` on one of PayPal's
API hosts (`api.paypal.com`, `api-m.paypal.com`, `api.sandbox.paypal.com`, `api-m.sandbox.paypal.com`; no
port, credentials, query or fragment) under `/v1/notifications/certs/`. Anything else is refused before any
network access (SSRF / forged-key protection). The certificate is fetched over TLS without following
redirects, at most 64 KiB, then cached per URL. The signing certificate must name
`messageverificationcerts…paypal.com` as its subject CN (the rule of PayPal's own Java SDK) and be valid at
the injected `now`. The fetcher is injectable (`fetch_cert`) so tests never touch the network.

`PAYPAL-TRANSMISSION-TIME` is signed, but PayPal does not document whether a retry is re-signed with a new
time, so no window is enforced by default (`default_tolerance = None`); set `tolerance_seconds` to enforce
one. Replays are caught by the dedup key, the event `id` (`WH-…`). Type: `event_type`.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import (
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    check_timestamp,
    load_json,
    require_header,
    require_string,
)

CertFetcher = Callable[[str], Awaitable[bytes]]

CERT_HOSTS = frozenset({"api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com"})
CERT_PATH_PREFIX = "/v1/notifications/certs/"
MAX_CERT_BYTES = 64 * 1024
CERT_SUBJECT_PREFIX = "messageverificationcerts"
FETCH_TIMEOUT_SECONDS = 10.0
_CACHE_SIZE = 32


def check_cert_url(url: str) -> None:
    """Raise SignatureError unless `url` is an https URL on PayPal's certificate endpoint."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SignatureError("PAYPAL-CERT-URL is not a valid URL") from None
    if (
        parts.scheme != "https"
        or parts.hostname not in CERT_HOSTS
        or port is not None
        or parts.username is not None
        or parts.password is not None
        or parts.query
        or parts.fragment
        or not parts.path.startswith(CERT_PATH_PREFIX)
        or ".." in parts.path
    ):
        raise SignatureError("PAYPAL-CERT-URL is not a PayPal certificate URL")


async def fetch_cert_https(url: str) -> bytes:
    """GET the certificate with aiohttp: TLS verified, no redirects, bounded time and size."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise SignatureError(f"fetching the PayPal certificate answered HTTP {response.status}")
            data = await response.content.read(MAX_CERT_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SignatureError(f"could not fetch the PayPal certificate: {type(exc).__name__}") from None
    if len(data) > MAX_CERT_BYTES:
        raise SignatureError("the PayPal certificate is larger than 64 KiB")
    return data


def load_signing_cert(pem: bytes) -> x509.Certificate:
    """The first (leaf) certificate of a PEM bundle, checked to be PayPal's message-verification cert."""
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise SignatureError("PAYPAL-CERT-URL did not serve a PEM certificate") from None
    leaf = certificates[0]
    names = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if not any(isinstance(n, str) and n.startswith(CERT_SUBJECT_PREFIX) and n.endswith(".paypal.com") for n in names):
        raise SignatureError("the certificate is not PayPal's message verification certificate")
    if not isinstance(leaf.public_key(), rsa.RSAPublicKey):
        raise SignatureError("the PayPal certificate does not hold an RSA key")
    return leaf


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> bytes:
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()


class PayPalProvider(Provider):
    type = "paypal"
    requires_secrets = False
    options = {"webhook_id": "the webhook ID shown in the PayPal developer dashboard (required)"}
    stored_headers = (
        "paypal-transmission-id",
        "paypal-transmission-time",
        "paypal-transmission-sig",
        "paypal-cert-url",
        "paypal-auth-algo",
    )

    def __init__(self, settings: SourceSettings, *, fetch_cert: CertFetcher | None = None) -> None:
        super().__init__(settings)
        webhook_id = settings.options.get("webhook_id")
        if not isinstance(webhook_id, str) or not webhook_id.strip():
            raise OptionError("webhook_id", "webhook_id is required: the ID PayPal shows for this webhook")
        self.webhook_id = webhook_id.strip()
        self._fetch_cert = fetch_cert or fetch_cert_https
        self._certs: dict[str, x509.Certificate] = {}

    async def _certificate(self, url: str) -> x509.Certificate:
        cert = self._certs.get(url)
        if cert is None:
            try:
                pem = await self._fetch_cert(url)
            except SignatureError:
                raise
            except Exception as exc:  # an injected fetcher's own errors: the certificate is unavailable
                raise SignatureError(f"could not fetch the PayPal certificate: {type(exc).__name__}") from None
            cert = load_signing_cert(pem)
            if len(self._certs) >= _CACHE_SIZE:
                self._certs.pop(next(iter(self._certs)))
            self._certs[url] = cert
        return cert

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        transmission_id = require_header(headers, "paypal-transmission-id")
        transmission_time = require_header(headers, "paypal-transmission-time")
        cert_url = require_header(headers, "paypal-cert-url")
        algorithm = require_header(headers, "paypal-auth-algo")
        if algorithm != "SHA256withRSA":
            raise SignatureError(f"unsupported PAYPAL-AUTH-ALGO {algorithm[:40]!r}")
        try:
            signature = base64.b64decode(require_header(headers, "paypal-transmission-sig"), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("PAYPAL-TRANSMISSION-SIG is not base64") from None
        try:
            sent = datetime.fromisoformat(transmission_time.replace("Z", "+00:00"))
        except ValueError:
            raise SignatureError("PAYPAL-TRANSMISSION-TIME is not an ISO 8601 time") from None
        sent_at = (sent if sent.tzinfo else sent.replace(tzinfo=UTC)).timestamp()
        check_cert_url(cert_url)
        cert = await self._certificate(cert_url)
        if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
            raise SignatureError("the PayPal certificate is not valid at this time")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):  # load_signing_cert checked it; for the type checker
            raise SignatureError("the PayPal certificate does not hold an RSA key")
        message = signed_message(transmission_id, transmission_time, self.webhook_id, body)
        try:
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise SignatureError("PAYPAL-TRANSMISSION-SIG does not verify") from None
        check_timestamp(sent_at, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        event = load_json(body)
        if not isinstance(event, dict):
            raise PayloadError("a PayPal webhook event must be a JSON object")
        return [
            InboundEvent(
                event_id=require_string(event.get("id"), "event id"),
                event_type=require_string(event.get("event_type"), "event_type"),
                document=event,
            )
        ]


PROVIDER = PayPalProvider
