"""Generic HTTP destination: the canonical event as JSON to any endpoint, or a request built from JMESPath
templates, so a team can add an endpoint without writing code.

Plain mode: `POST {url}` with the canonical event (its `name` replaced by the `event_names` override, if any),
`Content-Type: application/json`, `Idempotency-Key: <event id>` and the configured `headers`.

Templated mode (any of these options): `method`, `url_template` (JMESPath giving the URL), `headers_template`
(header -> JMESPath), `body` (JMESPath projection of the canonical event, e.g. `{event: name, amount:
order.total}`). The expressions are evaluated against the canonical event with the mapping functions of
`bridge.mapping.functions` and compiled once at construction: a template that does not compile is an
OptionError; one that fails on an event (error, or a URL/header of the wrong type) is a RenderError.

Signing (`signing: standard_webhooks`, `signing_secret: whsec_…`): every request carries the Standard Webhooks
headers `webhook-id` (derived from the event's dedup key, so a retry has the same id), `webhook-timestamp` (send
time, Unix seconds) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the
base64-decoded secret), so any receiver can verify that the request came from this bridge and is fresh.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import jmespath
from jmespath.exceptions import JMESPathError

from bridge.destinations import _common as c
from bridge.destinations import _dedup
from bridge.destinations.base import (
    USER_AGENT,
    Destination,
    DestinationSettings,
    HttpRequest,
    OptionError,
    Outcome,
)
from bridge.errors import RenderError
from bridge.mapping.analysis import check_functions, tokenize
from bridge.mapping.functions import OPTIONS

_METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
_BODYLESS = ("GET", "DELETE")


def _compile(expression: Any, key: str) -> Any:
    """Compile once, checking function names, arity and literal arguments as mapping files are checked."""
    if not isinstance(expression, str) or not expression.strip():
        raise OptionError(key, f"{key} must be a JMESPath expression (text)")
    try:
        compiled = jmespath.compile(expression)
    except JMESPathError as exc:
        raise OptionError(key, f"{key}: invalid JMESPath {expression!r}: {exc}") from None
    problems = check_functions(compiled.parsed, tokenize(expression))
    if problems:
        first = problems[0]
        hint = f" (hint: {first.hint})" if first.hint else ""
        raise OptionError(key, f"{key}: {first.message} at column {first.offset + 1} of {expression!r}{hint}")
    return compiled


class HttpDestination(Destination):
    type = "http"
    options: ClassVar[Mapping[str, str]] = {
        "method": "HTTP method (POST, PUT, PATCH, GET, DELETE); default POST",
        "url_template": "JMESPath over the canonical event giving the URL (instead of / overriding `url`)",
        "headers_template": "mapping of header name -> JMESPath over the canonical event (null: header left out)",
        "body": "JMESPath projection of the canonical event sent as the JSON body (default: the whole event)",
        "idempotency_header": "header carrying the event id (default Idempotency-Key; empty to leave it out)",
        "signing": "standard_webhooks: sign every request with the Standard Webhooks headers (default: none)",
        "signing_secret": "the signing secret, whsec_<base64> (from ${ENV}); needed with signing",
    }
    sends_custom_names = True
    requires_url = False  # `url` or `url_template`

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self.method = c.option_text(options, "method", default="POST").upper()
        if self.method not in _METHODS:
            raise OptionError("method", f"method must be one of {', '.join(_METHODS)}, got {self.method!r}")
        self.url = settings.url
        self._url_template = _compile(options["url_template"], "url_template") if "url_template" in options else None
        if self._url_template is None:
            if not settings.url:
                raise OptionError("url", "an http destination needs `url` or the option `url_template`")
            c.check_http_url(settings.url, "url")
        elif settings.url:
            c.check_http_url(settings.url, "url")
        raw_headers = options.get("headers_template") or {}
        if not isinstance(raw_headers, Mapping):
            raise OptionError("headers_template", "headers_template must be a mapping of header name -> JMESPath")
        self._header_templates = {
            str(header): _compile(expression, f"headers_template.{header}")
            for header, expression in raw_headers.items()
        }
        self._body = _compile(options["body"], "body") if "body" in options else None
        self._idempotency_header = c.option_text(options, "idempotency_header", default="Idempotency-Key")
        if "idempotency_header" in options and options["idempotency_header"] in ("", None):
            self._idempotency_header = ""
        self._templated = bool(self._url_template or self._header_templates or self._body)
        #: the names under which config or a template may set the content type (mostly none: the default goes on)
        self._content_type_names = [
            h for h in (*settings.headers, *self._header_templates) if h.lower() == "content-type"
        ]
        self.signing = c.option_choice(options, "signing", ("none", "standard_webhooks"), "none")
        self._signing_key = signing_key(options) if self.signing == "standard_webhooks" else None
        if self._signing_key is None and "signing_secret" in options:
            raise OptionError("signing", "signing_secret is set but signing is not (signing: standard_webhooks)")

    def __repr__(self) -> str:
        return f"HttpDestination(name={self.name!r}, method={self.method!r}, url={self.url!r})"

    def _search(self, compiled: Any, document: Mapping[str, Any], what: str) -> Any:
        try:
            return compiled.search(document, options=OPTIONS)
        except JMESPathError as exc:
            raise RenderError(f"{what} template failed on this event: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:  # raised by custom functions
            raise RenderError(f"{what} template failed on this event: {exc}") from None

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        if len(events) != 1:
            raise RenderError(f"the http destination sends one event per request, got {len(events)}")
        canonical = c.event_name(events[0])
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        event = {**events[0], "name": name}
        url = self.url
        if self._url_template is not None:
            found = self._search(self._url_template, event, "url")
            if not isinstance(found, str) or not c.is_http_url(found):
                raise RenderError(f"url_template gave {found!r}, not an absolute http(s) URL")
            url = found
        headers = {"User-Agent": USER_AGENT}
        if self._idempotency_header and (event_id := c.text(event, "id")):
            headers[self._idempotency_header] = event_id
        headers.update(self.settings.headers)
        for header, compiled in self._header_templates.items():
            value = self._search(compiled, event, f"header {header}")
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise RenderError(f"header {header} template gave a {type(value).__name__}, not text")
            value = str(value)
            if "\r" in value or "\n" in value:
                raise RenderError(f"header {header} template gave a value with a line break")
            headers[header] = value
        body = b""
        if self._body is not None:
            document = self._search(self._body, event, "body")
            if document is None:
                raise RenderError("the body template gave null for this event")
            body = c.json_bytes(document)
        elif self.method not in _BODYLESS:
            body = c.json_bytes(event)
        if body and not any(h in headers for h in self._content_type_names):
            headers["Content-Type"] = "application/json"
        if self._signing_key is not None:
            headers.update(
                sign_standard_webhooks(self._signing_key, _dedup.key_uuid(events[0]), int(self.clock.now()), body)
            )
        return HttpRequest(self.method, url, headers, body)

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        return c.classify_with(status, body, permanent={}, transient={})


def signing_key(options: Mapping[str, Any]) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` + base64); OptionError if it is not one."""
    secret = c.option_text(options, "signing_secret", required=True)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise OptionError("signing_secret", "signing_secret must be whsec_ followed by base64") from None
    if len(key) < 24:
        raise OptionError("signing_secret", "signing_secret must hold at least 24 random bytes")
    return key


def sign_standard_webhooks(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for one request."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": f"v1,{signature}"}


DESTINATION = HttpDestination
