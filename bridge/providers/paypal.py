"""PayPal REST webhooks: RSA `SHA256withRSA` over
`f"{PAYPAL-TRANSMISSION-ID}|{PAYPAL-TRANSMISSION-TIME}|{webhook_id}|{crc32(raw body) as unsigned decimal}"`,
signature base64 in `PAYPAL-TRANSMISSION-SIG`, verified with the X.509 certificate named by `PAYPAL-CERT-URL`.
`webhook_id` is the ID PayPal shows for the webhook (option, required). There is no shared secret.

The signature covers the body only through its CRC32, which anyone can match: one captured delivery is
enough to forge another body with the same CRC under the same signature. PayPal's scheme cannot be fixed
here; what keeps a forged body out is, in this order and all before any network access:

1. the window: `PAYPAL-TRANSMISSION-TIME` within `tolerance_seconds` (default 300 s, both directions) of the
   injected clock;
2. the certificate URL: it must be exactly `https://api(-m).(sandbox.)paypal.com/v1/notifications/certs/<id>`,
   as sent and after percent-decoding (`keys.UrlRule`);
3. one body per transmission: a transmission id seen in a verified request is remembered with the SHA-256 of
   its body until its window closes; the same id with another body is refused (401). The same id with the
   same body passes (a replay of the delivery; it is a `duplicate` downstream).

Memory does not survive a restart, so the dedup key of the webhook is the transmission id itself (not the
event id `WH-…`): the outbox's webhook dedup keys (webhook_keys) then refuses a second use of a transmission
id after a restart as well (answered `duplicate`, nothing stored). A genuine retry of an event comes as a new
transmission (new id, new time, new signature), so it is caught by the raw-body dedup instead, and its
canonical events by the delivery dedup. Without headers (`bridge preview` of a saved body) the event id is used.

The certificate is fetched through `keys.RemoteKeys` (TLS, no redirects, 10 s, 64 KiB, cached for a day,
failures cached for 60 s, at most 4 fetches at once); it must name `messageverificationcerts…paypal.com` as its
subject CN (the rule of PayPal's own Java SDK) and be valid at the injected `now`. The fetcher is injectable
(`fetch_cert`) so tests never touch the network.

PayPal's simulator signs mock events with the literal webhook id `WEBHOOK_ID`, which anyone can therefore
sign for: that id is refused unless the source sets `allow_simulator: true` (a test source; a warning is
logged at start-up).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime

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
from bridge.providers.keys import Fetch, RemoteKeys, UrlRule, fetch_https
from bridge.providers.params import token

log = logging.getLogger("bridge.providers.paypal")

CertFetcher = Fetch
SIMULATOR_WEBHOOK_ID = "WEBHOOK_ID"
CERT_URL = UrlRule(
    "PAYPAL-CERT-URL",
    re.compile(r"(?i:https://api(?:-m)?\.(?:sandbox\.)?paypal\.com)/v1/notifications/certs/[A-Za-z0-9][A-Za-z0-9-]{0,127}"),
)
CERT_SUBJECT_PREFIX = "messageverificationcerts"
#: transmission ids remembered at most (only verified ones are: real PayPal traffic within one window)
MAX_TRANSMISSIONS = 100_000
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
_warned_simulator: set[str] = set()

#: the default fetcher (tests replace it before the app builds its providers)
fetch_cert_https: Fetch = fetch_https


def check_cert_url(url: str) -> None:
    """Raise SignatureError unless `url` is an https URL on PayPal's certificate endpoint."""
    CERT_URL.check(url)


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


def transmission_seconds(value: str) -> float:
    """PAYPAL-TRANSMISSION-TIME (`2016-09-21T22:00:46Z`) as Unix seconds; SignatureError when it is not one."""
    if not _TIME.fullmatch(value):
        raise SignatureError("PAYPAL-TRANSMISSION-TIME is not an ISO 8601 time")
    try:
        return datetime.fromisoformat(value).astimezone(UTC).timestamp()
    except (ValueError, OverflowError):
        raise SignatureError("PAYPAL-TRANSMISSION-TIME is not an ISO 8601 time") from None


class TransmissionLog:
    """Transmission ids of verified requests with the SHA-256 of their body, each until its window closes (or,
    with no window, until `max_entries` newer ones push it out)."""

    def __init__(self, max_entries: int = MAX_TRANSMISSIONS) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def check(self, transmission_id: str, digest: bytes, now: float) -> None:
        """SignatureError when `transmission_id` was verified with another body and is still remembered."""
        seen = self._seen.get(transmission_id)
        if seen is not None and seen[1] >= now and seen[0] != digest:
            raise SignatureError("PAYPAL-TRANSMISSION-ID was already used with another body")

    def record(self, transmission_id: str, digest: bytes, until: float, now: float) -> None:
        self.check(transmission_id, digest, now)  # again: a concurrent request may have recorded it meanwhile
        self._seen[transmission_id] = (digest, until)
        self._seen.move_to_end(transmission_id)
        while self._seen:
            oldest_until = next(iter(self._seen.values()))[1]
            if oldest_until >= now and len(self._seen) <= self.max_entries:
                break
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


class PayPalProvider(Provider):
    type = "paypal"
    requires_secrets = False
    default_tolerance = 300.0
    options = {
        "webhook_id": "the webhook ID shown in the PayPal developer dashboard (required)",
        "allow_simulator": "accept webhook_id WEBHOOK_ID, the simulator's (anyone can sign for it): test sources only",
    }
    stored_headers = (
        "paypal-transmission-id",
        "paypal-transmission-time",
        "paypal-transmission-sig",
        "paypal-cert-url",
        "paypal-auth-algo",
    )
    signed_headers = ("paypal-transmission-id", "paypal-transmission-time")

    def __init__(self, settings: SourceSettings, *, fetch_cert: Fetch | None = None) -> None:
        super().__init__(settings)
        webhook_id = settings.options.get("webhook_id")
        if not isinstance(webhook_id, str) or not webhook_id.strip():
            raise OptionError("webhook_id", "webhook_id is required: the ID PayPal shows for this webhook")
        allow_simulator = settings.options.get("allow_simulator", False)
        if not isinstance(allow_simulator, bool):
            raise OptionError("allow_simulator", "allow_simulator must be true or false")
        self.webhook_id = webhook_id.strip()
        if self.webhook_id == SIMULATOR_WEBHOOK_ID:
            if not allow_simulator:
                raise OptionError(
                    "webhook_id",
                    "webhook_id WEBHOOK_ID is PayPal's simulator id, which anyone can sign for; use the real "
                    "webhook's ID, or set allow_simulator: true on a test source",
                )
            if settings.name not in _warned_simulator:
                _warned_simulator.add(settings.name)
                log.warning(
                    "source accepts PayPal simulator events (webhook_id WEBHOOK_ID): anyone can forge its webhooks",
                    extra={"source": settings.name},
                )
        self._certs: RemoteKeys[x509.Certificate] = RemoteKeys(
            rule=CERT_URL, load=load_signing_cert, fetch=fetch_cert or fetch_cert_https
        )
        self._transmissions = TransmissionLog()

    @property
    def _fetch_cert(self) -> Fetch:
        return self._certs.fetch

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        transmission_id = token(
            require_header(headers, "paypal-transmission-id"), "PAYPAL-TRANSMISSION-ID", max_length=128
        )
        if "|" in transmission_id:
            raise SignatureError("PAYPAL-TRANSMISSION-ID contains '|'")
        transmission_time = require_header(headers, "paypal-transmission-time")
        algorithm = require_header(headers, "paypal-auth-algo")
        if algorithm != "SHA256withRSA":
            raise SignatureError(f"unsupported PAYPAL-AUTH-ALGO {algorithm[:40]!r}")
        encoded = require_header(headers, "paypal-transmission-sig")
        try:
            signature = base64.b64decode(token(encoded, "PAYPAL-TRANSMISSION-SIG", max_length=2048), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("PAYPAL-TRANSMISSION-SIG is not base64") from None
        # the cheap checks, all before the certificate can be fetched
        sent_at = transmission_seconds(transmission_time)
        check_timestamp(sent_at, now, self.tolerance)
        cert_url = self._certs.allowed(require_header(headers, "paypal-cert-url"))
        digest = hashlib.sha256(body).digest()
        self._transmissions.check(transmission_id, digest, now)

        cert = await self._certs.get(cert_url, now)
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
        until = sent_at + self.tolerance if self.tolerance else float("inf")
        self._transmissions.record(transmission_id, digest, until, now)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        event = load_json(body)
        if not isinstance(event, dict):
            raise PayloadError("a PayPal webhook event must be a JSON object")
        event_id = require_string(event.get("id"), "event id")
        return [
            InboundEvent(
                event_id=headers.get("paypal-transmission-id", "").strip() or event_id,
                event_type=require_string(event.get("event_type"), "event_type"),
                document=event,
            )
        ]


PROVIDER = PayPalProvider
