"""Braintree: a form-encoded POST of `bt_signature` and `bt_payload`.

`bt_payload` is base64 (with `\\n` line breaks) of an XML `<notification>`; `bt_signature` is
`<public key>|<hex>` pairs joined by `&`, where hex = HMAC-SHA1 keyed with the raw SHA-1 digest of the API
private key, over `bt_payload` exactly as posted (Braintree's SDKs also accept it signed with a trailing `\\n`).
As in the SDK, only the pair of a configured public key counts (option `public_key`), and the payload must
consist of `[A-Za-z0-9+=/\\n]` before anything is decoded. The source's `secrets` are the API private keys.
No timestamp (Braintree's is inside the XML).

The form must carry `bt_signature` and `bt_payload` exactly once each (a repeated field is refused, not
reduced to one copy). The XML is read with the standard library after refusing any DTD (no entities); it
becomes JSON the way Braintree's SDK reads it: `type="array"` elements are lists, `type="integer"` numbers,
`type="boolean"` booleans, `nil="true"` null, other text as text (dates and amounts stay text), `-` in names
is `_`. The document is the `<notification>`: `{"timestamp", "kind", "subject": {…}}`. Braintree notifications
have no id: the dedup key is `<kind>:sha256:<first 32 hex of the XML's SHA-256>` (a retry resends the same
payload); type: `kind` (`subscription_charged_successfully`, …).

Subscription notifications name no currency (the merchant account's): the option `currency` (ISO code) is added
to the document as `_currency` for the mapping, which prefers a transaction's own `currency_iso_code`.

When a webhook URL is created in the Control Panel, Braintree checks it with `GET <url>?bt_challenge=<challenge>`
and expects the body `<public key>|<hex HMAC-SHA1 of the challenge, keyed as above>` (the SDK's
`webhook_notification.verify`): `answer_get` gives that answer, with the first `public_key` and the first
private key in `secrets`. The query must be exactly `bt_challenge=<20 to 32 lower-case hex>` (the SDK's own
rule), at most 128 bytes; anything else is a 400. (The answer signs a hex string that is never a valid
`bt_payload`: base64 of hex text does not decode to `<notification>`.)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from typing import Any

import orjson

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import Ack, InboundEvent, OptionError, Provider, SourceSettings, any_digest_matches
from bridge.providers.forms import form_fields

_PAYLOAD = re.compile(rb"[A-Za-z0-9+=/\n]+")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_CHALLENGE = re.compile(r"[a-f0-9]{20,32}")
MAX_CHALLENGE_QUERY = 128
MAX_XML_DEPTH = 32


def signing_key(private_key: str) -> bytes:
    return hashlib.sha1(private_key.encode()).digest()


def sha1_hmac(private_key: str, content: bytes) -> str:
    return hmac.new(signing_key(private_key), content, hashlib.sha1).hexdigest()


def challenge_response(public_key: str, private_key: str, challenge: str) -> str:
    """The answer to Braintree's webhook verification challenge (`bt_challenge`): `public_key|hmac`."""
    if not _CHALLENGE.fullmatch(challenge):
        raise SignatureError("a Braintree challenge is 20 to 32 lower-case hex characters")
    return f"{public_key}|{sha1_hmac(private_key, challenge.encode())}"


def form_signature(body: bytes) -> tuple[str, bytes]:
    """(bt_signature, bt_payload) of the form body; SignatureError when either is missing, repeated or malformed."""
    try:
        fields = form_fields(body)
    except PayloadError as exc:
        raise SignatureError(f"not a Braintree webhook form: {exc}") from None
    values = dict(fields)
    signature, payload = values.get("bt_signature"), values.get("bt_payload")
    if not signature or not payload:
        raise SignatureError("a Braintree webhook needs bt_signature and bt_payload")
    raw = payload.encode("ascii", errors="replace")
    if not _PAYLOAD.fullmatch(raw):
        raise SignatureError("bt_payload contains characters outside [A-Za-z0-9+=/\\n]")
    return signature, raw


def _underscored(tag: str) -> str:
    return tag.replace("-", "_")


def _value(element: ElementTree.Element, depth: int) -> Any:
    if depth > MAX_XML_DEPTH:
        raise PayloadError("the Braintree notification XML is nested too deeply")
    children = list(element)
    if element.get("type") == "array":
        return [_value(child, depth + 1) for child in children]
    if not children:
        text = element.text or ""
        kind = element.get("type")
        if element.get("nil") == "true":
            return None
        if kind == "integer" and text.strip():
            try:
                return int(text.strip())
            except ValueError:
                raise PayloadError(f"<{element.tag}> is typed integer but holds {text[:30]!r}") from None
        if kind == "boolean":
            return text.strip() in ("true", "1")
        return text
    result: dict[str, Any] = {}
    for child in children:
        name = _underscored(child.tag)
        value = _value(child, depth + 1)
        if name not in result or child.get("type") == "array" or not list(child):
            result[name] = value
        elif isinstance(result[name], list):
            result[name].append(value)
        else:
            result[name] = [result[name], value]
    return result


def notification(xml: bytes) -> dict[str, Any]:
    """The `<notification>` of a decoded bt_payload as JSON-style data; PayloadError when it is not one."""
    if b"<!DOCTYPE" in xml.upper() or b"<!ENTITY" in xml.upper():
        raise PayloadError("the Braintree notification XML must not declare a DTD or entities")
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise PayloadError(f"bt_payload is not XML: {exc}") from None
    if root.tag != "notification":
        raise PayloadError(f"bt_payload is a <{root.tag[:40]}>, not a <notification>")
    document = _value(root, 0)
    if not isinstance(document, dict):
        raise PayloadError("the Braintree notification is empty")
    return document


class BraintreeProvider(Provider):
    type = "braintree"
    options = {
        "public_key": "the API public key whose private key is in secrets, or a list while rotating (required)",
        "currency": "the merchant account's currency (ISO 4217, e.g. USD), for notifications that name none",
    }

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        public = settings.options.get("public_key")
        keys = [public] if isinstance(public, str) else public
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k and "|" not in k for k in keys):
            raise OptionError("public_key", "public_key is required: the Braintree API public key (or a list)")
        self.public_keys = frozenset(keys)
        self.challenge_public_key: str = keys[0]
        currency = settings.options.get("currency")
        if currency is not None and not (
            isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isalpha()
        ):
            raise OptionError("currency", f"currency must be a 3-letter ISO 4217 code, got {currency!r}")
        self.currency = currency.upper() if isinstance(currency, str) else None

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        signature, payload = form_signature(body)
        received = []
        for pair in signature.split("&"):
            public, bar, digest = pair.partition("|")
            if bar and public in self.public_keys:
                if not _HEX40.fullmatch(digest):
                    raise SignatureError("bt_signature holds a malformed signature for the configured public key")
                received.append(digest)
        if not received:
            raise SignatureError("bt_signature has no signature for the configured public key")
        expected = [sha1_hmac(key, content) for key in self.secrets for content in (payload, payload + b"\n")]
        if not any_digest_matches(expected, received):
            raise SignatureError("bt_signature does not match a configured private key")

    def answer_get(self, query: bytes) -> Ack | None:
        """Braintree's URL verification: `bt_challenge=<hex>` answered with `<public key>|<hmac>` (200 text/plain);
        any other query 400."""
        if len(query) > MAX_CHALLENGE_QUERY:
            return _bad_challenge(f"the query is longer than {MAX_CHALLENGE_QUERY} bytes")
        try:
            fields = form_fields(query)
        except PayloadError as exc:
            return _bad_challenge(str(exc))
        if len(fields) != 1 or fields[0][0] != "bt_challenge":
            return _bad_challenge("expected the one query parameter bt_challenge")
        try:
            answer = challenge_response(self.challenge_public_key, self.secrets[0], fields[0][1])
        except SignatureError as exc:
            return _bad_challenge(str(exc))
        return Ack(200, answer.encode(), "text/plain; charset=utf-8")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        try:
            _, payload = form_signature(body)
            xml = base64.decodebytes(payload)
        except (SignatureError, binascii.Error) as exc:
            raise PayloadError(f"bt_payload cannot be decoded: {exc}") from None
        document = notification(xml)
        kind = document.get("kind")
        if not isinstance(kind, str) or not kind.strip():
            raise PayloadError("the Braintree notification has no kind")
        kind = kind.strip()
        if self.currency is not None:
            document["_currency"] = self.currency
        return [InboundEvent(f"{kind}:sha256:{hashlib.sha256(xml).hexdigest()[:32]}", kind, document)]


def _bad_challenge(reason: str) -> Ack:
    return Ack(400, orjson.dumps({"error": f"not a Braintree verification challenge: {reason}"}), "application/json")


PROVIDER = BraintreeProvider
