"""Mercado Pago: `x-signature: ts=<ts>,v1=<hex>` = HMAC-SHA256(the application's webhook secret signature, manifest)
with the manifest `id:<data.id>;request-id:<x-request-id>;ts:<ts>;` (a `key:value;` part whose value is absent
is left out). Mercado Pago publishes no vector that can be reproduced (its example has no secret).

The signature covers neither the body nor anything but `data.id`, the request id and `ts`. Mercado Pago
documents `data.id` as the notification URL's `data.id` query parameter, which equals the body's `data.id`;
the bridge hands providers the body, not the query, so the manifest is built from the body's `data.id`, which
binds the one field a mapping may trust to the signature. An alphanumeric `data.id` is lower-cased, as
Mercado Pago's documentation asks. Everything else in the body (`type`, `action`, `live_mode`, dates) is
NOT signed (`signed_fields`; `bridge check` names a mapping's other reads). The document gains
`_signed_at`: the signed `ts` in Unix seconds, the one trustworthy time.

`ts` is Unix seconds (the docs' example) or milliseconds (the docs' wording): 13 or more digits are read as
milliseconds. Mercado Pago does not document whether a retry is re-signed with a new `ts`, so no window is
enforced by default; `tolerance_seconds` enforces one. The header is parsed strictly: `ts` and `v1` exactly
once each, no whitespace, lower-case hex. Type: `action` when it is `<type>.<verb>` (`payment.created`,
`payment.updated`), else `type` (`stop_delivery_op_wh`); dedup key `<that type>:<data.id>:<notification id>`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

import orjson

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import InboundEvent, Provider, any_digest_matches, check_timestamp, load_json, require_string
from bridge.providers.params import MILLISECONDS_DIGITS, integer, is_lower_hex, parse_params, token

HEADER = "x-signature"
REQUEST_ID = "x-request-id"
_ALNUM = re.compile(r"[A-Za-z0-9]+")


def parse_signature(value: str) -> tuple[str, str]:
    """(ts, v1) of an `x-signature` header, read once and strictly (`params.parse_params`): `ts` and `v1` exactly
    once each, no whitespace or empty elements, no key in another case, `ts` a plain integer of at most 14 digits,
    `v1` 64 lower-case hex characters. SignatureError otherwise."""
    found = parse_params(value, header="x-signature", separator=",", single=frozenset({"ts", "v1"}))
    if "ts" not in found or "v1" not in found:
        raise SignatureError("x-signature needs ts= and v1=")
    ts, v1 = found["ts"][0], found["v1"][0]
    integer(ts, "x-signature ts=", max_digits=MILLISECONDS_DIGITS)
    if len(v1) != 64 or not is_lower_hex(v1):
        raise SignatureError("x-signature v1= is not 64 lower-case hex characters")
    return ts, v1


def signed_seconds(ts: str) -> int:
    """`ts` in whole Unix seconds: 13 digits or more are milliseconds."""
    return int(ts) // 1000 if len(ts) >= 13 else int(ts)


def data_id(body: bytes) -> str | None:
    """The body's `data.id` as Mercado Pago signs it (text; alphanumeric ids lower-cased); None when absent."""
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SignatureError("the body is not JSON, so it has no data.id to check") from None
    data = document.get("data") if isinstance(document, dict) else None
    value = data.get("id") if isinstance(data, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise SignatureError("data.id is neither text nor an integer")
    text = str(value)
    return text.lower() if _ALNUM.fullmatch(text) else text


def manifest(identifier: str | None, request_id: str | None, ts: str) -> bytes:
    parts = []
    if identifier:
        parts.append(f"id:{identifier};")
    if request_id:
        parts.append(f"request-id:{request_id};")
    parts.append(f"ts:{ts};")
    return "".join(parts).encode()


class MercadoPagoProvider(Provider):
    type = "mercadopago"
    stored_headers = (HEADER, REQUEST_ID)
    signed_fields = ("data.id", "_signed_at")
    signed_headers = (REQUEST_ID,)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        header = headers.get(HEADER)
        if not header:
            raise SignatureError("missing x-signature header")
        ts, received = parse_signature(header)
        request_id = headers.get(REQUEST_ID)
        if request_id is not None and "," in token(request_id, "x-request-id", max_length=200):
            raise SignatureError("x-request-id is sent more than once")
        message = manifest(data_id(body), request_id, ts)
        expected = [hmac.new(secret.encode(), message, hashlib.sha256).hexdigest() for secret in self.secrets]
        if not any_digest_matches(expected, [received]):
            raise SignatureError("x-signature v1 does not match a configured secret")
        check_timestamp(signed_seconds(ts), now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        document = load_json(body)
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise PayloadError("a Mercado Pago notification must be a JSON object with a data object")
        topic = require_string(document.get("type"), "type")
        action = document.get("action")
        kind = action if isinstance(action, str) and action.startswith(f"{topic}.") else topic
        identifier = document["data"].get("id")
        notification = document.get("id")
        try:
            signed_at = signed_seconds(parse_signature(headers.get(HEADER, ""))[0])
        except SignatureError as exc:
            raise PayloadError(f"no signed time: {exc}") from None
        parts = [kind, "" if identifier is None else str(identifier), "" if notification is None else str(notification)]
        return [InboundEvent(":".join(parts), kind, {**document, "_signed_at": signed_at})]


PROVIDER = MercadoPagoProvider
