"""A configurable HMAC provider for senders with a plain shared-secret signature.

    sources:
      acme:
        provider: generic_hmac
        secrets: ["${ACME_SECRET}"]
        header: X-Acme-Signature          # required: where the signature is
        algorithm: sha256                 # sha1 | sha256 | sha512
        encoding: hex                     # hex | base64
        prefix: "sha256="                 # stripped from the header value; required when set
        signed_content: "{timestamp}.{body}"   # {body}, {timestamp}, {id}; default "{body}"
        timestamp_header: X-Acme-Timestamp     # needed for {timestamp}; enables the tolerance check
        timestamp_unit: s                 # s | ms
        id_header: X-Acme-Delivery        # needed for {id}; also the dedup key
        id_path: data.id                  # or: dedup key from the body (JMESPath; a dotted path is one)
        type_header: X-Acme-Event         # or type_path: type

`{body}` is the raw request bytes; `{timestamp}` and `{id}` are the header values exactly as sent. With a
timestamp header the window is `tolerance_seconds` (default 300 s, both directions). Dedup key: `id_path`
(from the signed body), else `id_header`, else the SHA-256 of the body (`sha256:<hex>`, identical on a
byte-identical retry). Event type: `type_path`, else `type_header`, else `webhook`. A header is signed only
when it is part of `signed_content` (`{id}`, `{timestamp}`); `type_header`, and `id_header` without `{id}`,
are values anyone replaying a captured body can change, so prefer the body paths when the body has them.
Hex signatures are compared case-insensitively here (no provider library defines the case).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string
from collections.abc import Mapping
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import (
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    any_digest_matches,
    check_timestamp,
    load_json,
    require_header,
    require_string,
)

ALGORITHMS = ("sha1", "sha256", "sha512")
ENCODINGS = ("hex", "base64")
PLACEHOLDERS = ("body", "timestamp", "id")
DEFAULT_TOLERANCE = 300.0
_NUMBER = re.compile(rb"\d{1,14}(\.\d{1,9})?")  # seconds or milliseconds; bounded before float()


def _option(options: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = options.get(key, default)
    if value is not None and (not isinstance(value, str) or not value):
        raise OptionError(key, f"{key} must be a non-empty string")
    return value


def _choice(options: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise OptionError(key, f"{key} must be one of {', '.join(choices)}")
    return str(value)


def compile_template(template: str) -> list[str | bytes]:
    """The signed-content template as literal bytes and placeholder names; OptionError when malformed."""
    parts: list[str | bytes] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise OptionError("signed_content", f"signed_content is not a valid template: {exc}") from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal.encode())
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            known = " ".join(f"{{{name}}}" for name in PLACEHOLDERS)
            raise OptionError("signed_content", f"unknown placeholder {{{field}}} (known: {known})")
        parts.append(field)
    if "body" not in parts:
        raise OptionError("signed_content", "signed_content must contain {body}")
    return parts


def _compile_path(options: Mapping[str, Any], key: str) -> Any:
    expression = _option(options, key)
    if expression is None:
        return None
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise OptionError(key, f"{key} is not a valid JMESPath expression: {exc}") from None


class GenericHmacProvider(Provider):
    type = "generic_hmac"
    options = {
        "header": "request header carrying the signature (required)",
        "algorithm": "sha1 | sha256 | sha512 (default sha256)",
        "encoding": "hex | base64 (default hex)",
        "prefix": "text before the signature in the header, e.g. 'sha256=' (default none)",
        "signed_content": "template of the signed bytes with {body}, {timestamp}, {id} (default '{body}')",
        "timestamp_header": "header with the signed timestamp; enables the tolerance check",
        "timestamp_unit": "s | ms (default s)",
        "id_header": "header with the delivery/event id: the dedup key and {id}",
        "id_path": "JMESPath (or dotted path) to the event id in the body, when there is no id_header",
        "type_header": "header with the event type",
        "type_path": "JMESPath (or dotted path) to the event type in the body, when there is no type_header",
    }

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        options = settings.options
        header = _option(options, "header")
        if header is None:
            raise OptionError("header", "header is required: the request header that carries the signature")
        self.header = header.lower()
        self.digest = getattr(hashlib, _choice(options, "algorithm", ALGORITHMS, "sha256"))
        self.encoding = _choice(options, "encoding", ENCODINGS, "hex")
        self.prefix = options.get("prefix", "")
        if not isinstance(self.prefix, str):
            raise OptionError("prefix", "prefix must be a string")
        self.template = compile_template(_option(options, "signed_content", "{body}") or "{body}")
        self.timestamp_header = (_option(options, "timestamp_header") or "").lower()
        self.timestamp_scale = 1000.0 if _choice(options, "timestamp_unit", ("s", "ms"), "s") == "ms" else 1.0
        self.id_header = (_option(options, "id_header") or "").lower()
        self.type_header = (_option(options, "type_header") or "").lower()
        self.id_path = _compile_path(options, "id_path")
        self.type_path = _compile_path(options, "type_path")
        if "timestamp" in self.template and not self.timestamp_header:
            raise OptionError("signed_content", "{timestamp} in signed_content needs timestamp_header")
        if "id" in self.template and not self.id_header:
            raise OptionError("signed_content", "{id} in signed_content needs id_header")
        if settings.tolerance_seconds is None:
            self.tolerance = DEFAULT_TOLERANCE if self.timestamp_header else None
        # the headers depend on the options, so the class-level tuples are shadowed per instance
        self.stored_headers = tuple(  # type: ignore[misc]
            h for h in (self.header, self.timestamp_header, self.id_header, self.type_header) if h
        )
        signed = (("timestamp", self.timestamp_header), ("id", self.id_header))
        self.signed_headers = tuple(h for part, h in signed if h and part in self.template)  # type: ignore[misc]

    def _encode(self, digest: bytes) -> str:
        return digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        received = require_header(headers, self.header)
        if self.prefix:
            if not received.startswith(self.prefix):
                raise SignatureError(f"{self.header} does not start with {self.prefix!r}")
            received = received[len(self.prefix) :]
        if self.encoding == "hex":
            received = received.lower()
        values = {"body": body}
        if self.timestamp_header:  # header values are latin-1 decoded bytes: encode back to the bytes sent
            values["timestamp"] = require_header(headers, self.timestamp_header).encode("latin-1")
            if not _NUMBER.fullmatch(values["timestamp"]):
                raise SignatureError(f"{self.timestamp_header} is not a number")
        if self.id_header:
            values["id"] = require_header(headers, self.id_header).encode("latin-1")
        message = b"".join(values[part] if isinstance(part, str) else part for part in self.template)
        expected = [self._encode(hmac.new(s.encode(), message, self.digest).digest()) for s in self.secrets]
        if not any_digest_matches(expected, [received]):
            raise SignatureError(f"{self.header} does not match a configured secret")
        if self.timestamp_header:
            check_timestamp(float(values["timestamp"]) / self.timestamp_scale, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        document = load_json(body)
        if self.id_path is not None:
            event_id = require_string(self.id_path.search(document), "event id (id_path)")
        elif self.id_header:
            event_id = headers.get(self.id_header, "").strip()
            if not event_id:
                raise PayloadError(f"missing {self.id_header} header")
        else:
            event_id = f"sha256:{hashlib.sha256(body).hexdigest()}"
        if self.type_path is not None:
            event_type = require_string(self.type_path.search(document), "event type (type_path)")
        elif self.type_header:
            event_type = headers.get(self.type_header, "").strip()
            if not event_type:
                raise PayloadError(f"missing {self.type_header} header")
        else:
            event_type = "webhook"
        return [InboundEvent(event_id=event_id, event_type=event_type, document=document)]


PROVIDER = GenericHmacProvider
