"""Mercado Pago: `x-signature: ts=<ts>,v1=<hex>` = HMAC-SHA256(the application's webhook secret signature, manifest)
with the manifest `id:<data.id>;request-id:<x-request-id>;ts:<ts>;` (a `key:value;` part whose value is absent
is left out). Mercado Pago publishes no vector that can be reproduced (its example has no secret).

The signature covers neither the body nor anything but `data.id`, the request id and `ts`. Mercado Pago
documents `data.id` as the notification URL's `data.id` query parameter, which equals the body's `data.id`;
the bridge hands providers the body, not the query, so the manifest is built from the body's `data.id`, which
binds the one field a mapping may trust to the signature. An alphanumeric `data.id` is lower-cased, as
Mercado Pago's documentation asks. Everything else in the body (`type`, `action`, `live_mode`, dates) is
NOT signed: the shipped mapping emits only what the signature covers plus the action as a label.

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

HEADER = "x-signature"
REQUEST_ID = "x-request-id"
_ELEMENT = re.compile(r"([a-z][a-z0-9]*)=([\x21-\x2b\x2d-\x7e]+)")  # printable ASCII, no space, no comma
_HEX64 = re.compile(r"[0-9a-f]{64}")
_ALNUM = re.compile(r"[A-Za-z0-9]+")


def parse_signature(value: str) -> tuple[str, str]:
    """(ts, v1) of an `x-signature` header, read strictly: SignatureError on whitespace, an empty or malformed
    element, `ts`/`v1` missing or given twice, or a key spelled in another case."""
    if not value or len(value) > 1024:
        raise SignatureError("x-signature is empty or too long")
    found: dict[str, str] = {}
    for element in value.split(","):
        match = _ELEMENT.fullmatch(element)
        if match is None:
            if element.partition("=")[0].lower() in ("ts", "v1"):
                raise SignatureError("x-signature has ts= or v1= in another case or padded")
            raise SignatureError("x-signature has an element that is not exactly one key=value")
        key, item = match.groups()
        if key in ("ts", "v1"):
            if key in found:
                raise SignatureError(f"x-signature has {key}= more than once")
            found[key] = item
    if "ts" not in found or "v1" not in found:
        raise SignatureError("x-signature needs ts= and v1=")
    ts, v1 = found["ts"], found["v1"]
    if not (ts.isascii() and ts.isdigit() and len(ts) <= 14) or (len(ts) > 1 and ts[0] == "0"):
        raise SignatureError("x-signature ts= is not a plain integer of at most 14 digits")
    if not _HEX64.fullmatch(v1):
        raise SignatureError("x-signature v1= is not 64 lower-case hex characters")
    return ts, v1


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

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        header = headers.get(HEADER)
        if not header:
            raise SignatureError("missing x-signature header")
        ts, received = parse_signature(header)
        request_id = headers.get(REQUEST_ID)
        if request_id is not None and (not request_id or len(request_id) > 200 or not _printable(request_id)):
            raise SignatureError("x-request-id is empty, too long or repeated")
        message = manifest(data_id(body), request_id, ts)
        expected = [hmac.new(secret.encode(), message, hashlib.sha256).hexdigest() for secret in self.secrets]
        if not any_digest_matches(expected, [received]):
            raise SignatureError("x-signature v1 does not match a configured secret")
        seconds = int(ts) / 1000 if len(ts) >= 13 else int(ts)
        check_timestamp(seconds, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        document = load_json(body)
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise PayloadError("a Mercado Pago notification must be a JSON object with a data object")
        topic = require_string(document.get("type"), "type")
        action = document.get("action")
        kind = action if isinstance(action, str) and action.startswith(f"{topic}.") else topic
        identifier = document["data"].get("id")
        notification = document.get("id")
        parts = [kind, "" if identifier is None else str(identifier), "" if notification is None else str(notification)]
        return [InboundEvent(":".join(parts), kind, document)]


def _printable(value: str) -> bool:
    return value.isascii() and value.isprintable() and " " not in value and "," not in value


PROVIDER = MercadoPagoProvider
