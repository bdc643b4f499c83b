"""What every provider module implements: verify a raw webhook, then split it into inbound events.

A provider module `bridge/providers/<type>.py` defines one `Provider` subclass and exposes it as the module
attribute `PROVIDER`. `bridge.providers.provider_class("<type>")` finds it by module name, so adding a
provider touches no shared registry.

The ingest path calls, in this order and never otherwise:

    await provider.verify(body, headers, now)   # raises SignatureError; must not trust anything in the body first
    events = provider.parse(body, headers)      # raises PayloadError; one InboundEvent per provider event

`headers` is a mapping with lower-case names. `now` is Unix seconds from the injected clock.

Any other method on a configured source's URL is answered by `provider.answer_get(query)` for GET (a provider
that verifies its webhook URL that way, as Braintree does, returns its answer) or 405.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import orjson

from bridge.errors import PayloadError, SignatureError


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One provider event inside a verified webhook.

    `event_id` is the provider's own dedup key (Stripe `evt_…`, Shopify `X-Shopify-Webhook-Id`, …);
    `document` is the JSON value the mapping file is evaluated against.
    """

    event_id: str
    event_type: str
    document: Any


@dataclass(frozen=True, slots=True)
class Ack:
    """The response a provider expects once we stored its webhook."""

    status_code: int
    body: bytes
    media_type: str


@dataclass(frozen=True)
class SourceSettings:
    """One `sources:` entry of bridge.yaml."""

    name: str
    provider: str
    secrets: tuple[str, ...] = field(default=(), repr=False)
    tolerance_seconds: float | None = None  # None: the provider's default
    mapping: str = ""  # mapping name (file stem under mappings/); defaults to the provider type
    max_body_bytes: int = 1024 * 1024
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # provider-specific keys (may hold secrets)


class OptionError(ValueError):
    """A provider-specific option of a source is missing or wrong; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


class Provider(ABC):
    """Verification and identification for one provider type."""

    #: the `provider:` value in bridge.yaml
    type: ClassVar[str]
    #: provider-specific option keys accepted in the source config, with a one-line description each
    options: ClassVar[Mapping[str, str]] = {}
    #: whether the source must configure at least one secret
    requires_secrets: ClassVar[bool] = True
    #: signature timestamp tolerance in seconds when the source does not set one (None: no timestamp in scheme)
    default_tolerance: ClassVar[float | None] = None
    #: lower-case request headers kept with the stored webhook (needed to re-verify, replay or debug it)
    stored_headers: ClassVar[tuple[str, ...]] = ()
    #: the document paths the signature covers, dotted (`amount.value`); None: the whole body is signed.
    #: Mappings should read only these (`bridge check` warns about the others, see providers/coverage.py)
    signed_fields: ClassVar[tuple[str, ...] | None] = None
    #: lower-case request headers the signature covers (a mapping reading `_headers.<name>` of any other header
    #: reads a value anyone can change on a replay)
    signed_headers: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings
        self.secrets = settings.secrets
        self.tolerance = (
            settings.tolerance_seconds if settings.tolerance_seconds is not None else self.default_tolerance
        )
        #: the mapping file this source's events go through (its stem); the provider type unless configured
        self.mapping_name = settings.mapping or self.type

    @abstractmethod
    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Raise SignatureError unless the request is authentic and fresh."""

    @abstractmethod
    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        """Split a verified body into provider events. Raise PayloadError if it is malformed."""

    def answer_get(self, query: bytes) -> Ack | None:
        """The answer to `GET /webhooks/{source}?<query>` (`query`: the raw query string, not yet decoded, of any
        length a client sends), for a provider that verifies its webhook URL with a GET; None (the default): the
        source takes POST only and the GET gets 405. Must not do I/O: anyone can send it."""
        return None

    def acknowledge(self, status: str, webhook_ids: list[int]) -> Ack:
        """The 2xx answer once the webhook is durably stored (`status`: accepted, duplicate, ignored, ...)."""
        return Ack(200, orjson.dumps({"status": status, "webhook_ids": webhook_ids}), "application/json")


# -- helpers shared by provider modules -------------------------------------------------------------


def load_json(body: bytes) -> Any:
    """Parse a JSON body, raising PayloadError (400) when it is not valid JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None


def require_header(headers: Mapping[str, str], name: str) -> str:
    """The value of a signature header, or SignatureError if it is missing or empty."""
    value = headers.get(name, "").strip()
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def any_digest_matches(expected: Iterable[bytes | str], received: Iterable[bytes | str]) -> bool:
    """Constant-time: whether any received signature equals any expected one (several secrets, several sigs)."""
    wanted = [e.encode() if isinstance(e, str) else e for e in expected]
    found = False
    for candidate in received:
        given = candidate.encode() if isinstance(candidate, str) else candidate
        for digest in wanted:
            # compare_digest is constant-time for equal lengths; lengths are public (same algorithm)
            if len(given) == len(digest) and hmac.compare_digest(given, digest):
                found = True
    return found


def check_timestamp(timestamp: float, now: float, tolerance: float | None, *, allow_future: bool = False) -> None:
    """Raise SignatureError when a signed timestamp is outside the tolerance window."""
    if tolerance is None or tolerance <= 0:
        return
    if timestamp < now - tolerance:
        raise SignatureError(f"timestamp too old ({now - timestamp:.0f}s > {tolerance:.0f}s tolerance)")
    if not allow_future and timestamp > now + tolerance:
        raise SignatureError(f"timestamp in the future ({timestamp - now:.0f}s > {tolerance:.0f}s tolerance)")


def require_string(value: Any, what: str) -> str:
    """A non-empty string id/type from a parsed body, or PayloadError."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"missing {what}")
    return value


def check_body_hmac(
    received: str,
    secrets: Iterable[str | bytes],
    message: bytes,
    *,
    header: str,
    encoding: Literal["hex", "base64"] = "hex",
) -> None:
    """The common scheme: `received` (a header value) is HMAC-SHA256 of `message` under one of `secrets`, lower-case
    hex or base64, compared exactly as the providers' own libraries do. Constant time; SignatureError naming
    `header` otherwise."""
    expected: list[bytes | str] = []
    for secret in secrets:
        key = secret.encode() if isinstance(secret, str) else secret
        digest = hmac.new(key, message, hashlib.sha256)
        expected.append(digest.hexdigest() if encoding == "hex" else base64.b64encode(digest.digest()))
    if not any_digest_matches(expected, [received.strip()]):
        raise SignatureError(f"{header} does not match a configured secret")


def single_event(body: bytes, *, what: str, id_key: str = "id", type_key: str = "type") -> list[InboundEvent]:
    """The common body: one JSON object carrying its own event id and type."""
    event = load_json(body)
    if not isinstance(event, dict):
        raise PayloadError(f"a {what} event must be a JSON object")
    return [
        InboundEvent(
            event_id=require_string(event.get(id_key), id_key),
            event_type=require_string(event.get(type_key), type_key),
            document=event,
        )
    ]
