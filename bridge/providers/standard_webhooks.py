"""Standard Webhooks (and Svix, Polar, …): headers `webhook-id`, `webhook-timestamp` (unix seconds) and
`webhook-signature: v1,<base64> [v1,<base64> …]`; HMAC-SHA256 over `f"{id}.{timestamp}.{body}"`, keyed with
the base64-decoded secret (`whsec_` prefix optional). Svix senders use the same scheme under `svix-id`,
`svix-timestamp`, `svix-signature`; those are read when the `webhook-*` ones are absent.

The signature is computed with the `standardwebhooks` package (`Webhook.sign`). Its `verify` is not used:
it reads the wall clock (`datetime.now()`) for its fixed ±5 min window, while the bridge's injected clock
and the configurable tolerance (default 300 s, both directions) must govern. Unknown signature versions
(`v1a` ed25519, …) are ignored; any `v1` matching any configured secret passes (zero-downtime rotation).

Polar: option `secret_encoding: raw`. Polar secrets are plain strings the sender base64-ENCODES before
applying Standard Webhooks, so the effective key is the secret's UTF-8 bytes; with `raw` the configured
secret is base64-encoded before use (what Polar's own SDK does). Default `base64`: the Standard Webhooks
`whsec_<base64>` form.

Dedup key: `webhook-id` (the message id, identical on every retry); type: the body's `type`.
"""

from __future__ import annotations

import base64
import binascii
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

_ENCODINGS = ("base64", "raw")


def sw_header(headers: Mapping[str, str], name: str) -> str:
    """`webhook-<name>`, else Svix's `svix-<name>`; stripped, "" when absent."""
    return headers.get(f"webhook-{name}", "").strip() or headers.get(f"svix-{name}", "").strip()


def v1_signatures(header: str) -> list[bytes]:
    """The decoded `v1` signatures of a space-separated `webhook-signature` list; others are skipped."""
    found = []
    for entry in header.split():
        version, _, value = entry.partition(",")
        if version != "v1" or not value:
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


class StandardWebhooksProvider(Provider):
    type = "standard_webhooks"
    options = {
        "secret_encoding": "base64 (default: whsec_<base64> secrets) or raw (Polar: the secret is used as plain text)",
    }
    default_tolerance = 300.0
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
        msg_id = sw_header(headers, "id")
        timestamp = sw_header(headers, "timestamp")
        signature = sw_header(headers, "signature")
        if not (msg_id and timestamp and signature):
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise SignatureError("webhook-timestamp is not an integer")
        received = v1_signatures(signature)
        if not received:
            raise SignatureError("webhook-signature carries no v1 signature")
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise SignatureError("body is not UTF-8 text") from None
        moment = datetime.fromtimestamp(int(timestamp), UTC)
        expected = [base64.b64decode(wh.sign(msg_id, moment, text).partition(",")[2]) for wh in self._webhooks]
        if not any_digest_matches(expected, received):
            raise SignatureError("no webhook-signature v1 signature matches a configured secret")
        check_timestamp(int(timestamp), now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        msg_id = sw_header(headers, "id")
        if not msg_id:
            raise PayloadError("missing webhook-id header")
        event = load_json(body)
        if not isinstance(event, dict):
            raise PayloadError("a Standard Webhooks payload must be a JSON object")
        return [InboundEvent(event_id=msg_id, event_type=require_string(event.get("type"), "type"), document=event)]


PROVIDER = StandardWebhooksProvider
