"""Standard Webhooks (and Svix, Polar, …): headers `webhook-id`, `webhook-timestamp` (unix seconds) and
`webhook-signature: v1,<base64> [v1,<base64> …]`; HMAC-SHA256 over `f"{id}.{timestamp}.{body}"`, keyed with
the base64-decoded secret (`whsec_` prefix optional). Svix senders use the same scheme under `svix-id`,
`svix-timestamp`, `svix-signature`; those are read when the `webhook-*` ones are absent.

The signature is computed with the `standardwebhooks` package (`Webhook.sign`). Its `verify` is not used:
it reads the wall clock (`datetime.now()`) for its fixed ±5 min window, while the bridge's injected clock
and the configurable tolerance (default 300 s, both directions) must govern. Unknown signature versions
(`v1a` ed25519, …) are ignored; any `v1` matching any configured secret passes (zero-downtime rotation).
The headers are read from one family (`webhook-*` or `svix-*`, never mixed), strictly: the timestamp is a plain
integer of at most 11 digits (checked before any datetime conversion), the id has no `.` or whitespace, the
signature list is single-space separated `<version>,<base64>` entries.

Polar: option `secret_encoding: raw`. Polar secrets are plain strings the sender base64-ENCODES before
applying Standard Webhooks, so the effective key is the secret's UTF-8 bytes; with `raw` the configured
secret is base64-encoded before use (what Polar's own SDK does). Default `base64`: the Standard Webhooks
`whsec_<base64>` form.

Dedup key: `webhook-id` (the message id, identical on every retry); type: the body's `type`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import (
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    any_digest_matches,
    check_timestamp,
    load_json,
    require_string,
)
from bridge.providers.params import SECONDS_DIGITS, integer, one_family, split_list, token

_ENCODINGS = ("base64", "raw")
_FAMILIES = ("webhook-", "svix-")
_NAMES = ("id", "timestamp", "signature")
_VERSION = re.compile(r"[a-z][a-z0-9]*")


def sw_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """(id, timestamp, signature) from ONE header family: `webhook-*`, else Svix's `svix-*`; stripped, "" when
    absent. The same header under both names with other values is refused (never one name's id with the other's
    signature)."""
    family = one_family(headers, _FAMILIES, _NAMES, "Standard Webhooks")
    msg_id, timestamp, signature = (headers.get(family + name, "").strip() for name in _NAMES)
    return msg_id, timestamp, signature


def message_id(value: str) -> str:
    """The webhook-id, if usable in the signed content `{id}.{timestamp}.{body}`: printable ASCII without
    whitespace or `.` (a dot would make the split of id and timestamp ambiguous), at most 256 characters."""
    token(value, "webhook-id", max_length=256)
    if "." in value:
        raise SignatureError("webhook-id contains '.'")
    return value


def v1_signatures(header: str) -> list[bytes]:
    """The decoded `v1` signatures of a `webhook-signature` list (`v1,<b64> v1a,<b64> …`, single spaces).
    Entries of other versions are skipped; a malformed entry (no comma, two commas, a version in upper case, a
    `v1` that is not base64) refuses the header, as it makes the reference library fail."""
    found = []
    for entry in split_list(header, header="webhook-signature", separator=" "):
        version, comma, value = entry.partition(",")
        if not comma or not value or "," in value or not _VERSION.fullmatch(version):
            raise SignatureError("webhook-signature has an entry that is not <version>,<signature>")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            raise SignatureError("webhook-signature has a v1 signature that is not base64") from None
    return found


class StandardWebhooksProvider(Provider):
    type = "standard_webhooks"
    options = {
        "secret_encoding": "base64 (default: whsec_<base64> secrets) or raw (Polar: the secret is used as plain text)",
    }
    default_tolerance = 300.0
    signed_headers = ("webhook-id", "webhook-timestamp", "svix-id", "svix-timestamp")
    stored_headers = (
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "svix-timestamp",
        "svix-signature",
    )

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        encoding = settings.options.get("secret_encoding", "base64")
        if encoding not in _ENCODINGS:
            raise OptionError("secret_encoding", f"secret_encoding must be one of {', '.join(_ENCODINGS)}")
        self.secret_encoding = encoding
        self._webhooks = []
        for secret in self.secrets:
            if encoding == "raw":
                secret = base64.b64encode(secret.encode()).decode()
            try:
                self._webhooks.append(Webhook(secret))
            except (binascii.Error, ValueError) as exc:
                raise OptionError("secrets", f"a Standard Webhooks secret must be whsec_<base64> ({exc})") from None
            except Exception as exc:  # EmptyWebhookSecretError / RuntimeError share no base
                raise OptionError("secrets", f"unusable Standard Webhooks secret: {exc}") from None

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        msg_id, timestamp, signature = sw_headers(headers)
        if not (msg_id and timestamp and signature):
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
        message_id(msg_id)
        seconds = integer(timestamp, "webhook-timestamp", max_digits=SECONDS_DIGITS)
        received = v1_signatures(signature)
        if not received:
            raise SignatureError("webhook-signature carries no v1 signature")
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8 text") from None
        moment = datetime.fromtimestamp(seconds, UTC)  # at most 11 digits: within datetime's range
        expected = [base64.b64decode(wh.sign(msg_id, moment, text).partition(",")[2]) for wh in self._webhooks]
        if not any_digest_matches(expected, received):
            raise SignatureError("no webhook-signature v1 signature matches a configured secret")
        check_timestamp(seconds, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        msg_id = sw_headers(headers)[0]
        if not msg_id:
            raise PayloadError("missing webhook-id header")
        event = load_json(body)
        if not isinstance(event, dict):
            raise PayloadError("a Standard Webhooks payload must be a JSON object")
        return [InboundEvent(event_id=msg_id, event_type=require_string(event.get("type"), "type"), document=event)]


PROVIDER = StandardWebhooksProvider
