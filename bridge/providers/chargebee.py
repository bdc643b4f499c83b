"""Chargebee: webhooks carry NO signature. The webhook settings can require HTTP Basic credentials
(`Authorization: Basic base64(username:password)`); we insist on them, so the source needs the options
`username` and `password` (a list of passwords is accepted while one is being rotated) and no `secrets`.

The credentials are compared in constant time over SHA-256 digests (equal lengths whatever was sent) and the
`Authorization` header is never stored. Dedup key: the event `id` (`ev_…`); type: `event_type`
(`subscription_created`, `payment_succeeded`, …). Chargebee may deliver an event twice or out of order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

from bridge.errors import SignatureError
from bridge.providers.base import (
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    any_digest_matches,
    require_header,
    single_event,
)


def basic_credentials(headers: Mapping[str, str]) -> bytes:
    """The decoded `user:password` bytes of an `Authorization: Basic …` header, or SignatureError."""
    scheme, _, token = require_header(headers, "authorization").partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise SignatureError("Authorization header is not HTTP Basic")
    try:
        return base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("Authorization header is not valid base64") from None


def credential_digest(username: str, password: str) -> bytes:
    return hashlib.sha256(f"{username}:{password}".encode()).digest()


def read_credentials(options: Mapping[str, Any], *, required: bool) -> list[bytes]:
    """Digests of every accepted `username:password`; [] when neither option is set and they are optional."""
    username = options.get("username")
    password = options.get("password")
    if username is None and password is None and not required:
        return []
    if not isinstance(username, str) or not username or ":" in username:
        raise OptionError("username", "username must be a non-empty string without ':'")
    passwords = [password] if isinstance(password, str) else password
    if not isinstance(passwords, list) or not passwords or not all(isinstance(p, str) and p for p in passwords):
        raise OptionError("password", "password must be a non-empty string (or a list of them while rotating)")
    return [credential_digest(username, p) for p in passwords]


class ChargebeeProvider(Provider):
    type = "chargebee"
    requires_secrets = False
    options = {
        "username": "HTTP Basic username set on the Chargebee webhook (required)",
        "password": "HTTP Basic password set on the Chargebee webhook, or a list while rotating (required)",
    }

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        self._credentials = read_credentials(settings.options, required=True)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = hashlib.sha256(basic_credentials(headers)).digest()
        if not any_digest_matches(self._credentials, [received]):
            raise SignatureError("HTTP Basic credentials do not match")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        return single_event(body, what="Chargebee", type_key="event_type")


PROVIDER = ChargebeeProvider
