"""Helpers shared by the destination modules: exact JSON numbers, event field access, option checks and
response-classification tables. Not a destination type (the leading underscore keeps it out of
`destination_types()`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import orjson

from bridge.destinations.base import BatchTooLarge as BatchTooLarge
from bridge.destinations.base import OptionError, Outcome, Verdict, classify_status, response_excerpt
from bridge.errors import RenderError
from bridge.urls import shown

JSON_HEADERS = {"Content-Type": "application/json"}

# A Decimal is written as a placeholder string, then the quoted placeholder is replaced by the bare digits.
# The nonce is random per process, so no string from an event can collide with it.
_NONCE = "\u2063dec" + secrets.token_hex(8) + ":"
_MARKER = _NONCE.encode()
_PLACEHOLDER = re.compile(rb'"' + re.escape(_MARKER) + rb'(-?[0-9]+(?:\.[0-9]+)?)"')


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError(f"cannot send a non-finite number ({value})")
        return _NONCE + format(value, "f")
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


def json_bytes(document: Any) -> bytes:
    """JSON for a request body. `Decimal` values become JSON numbers with exactly their digits (54.98 stays
    54.98, never 54.979999…); everything else as orjson writes it."""
    try:
        raw = orjson.dumps(document, default=_default)
    except TypeError as exc:
        raise RenderError(f"cannot encode the request body: {exc}") from None
    if _MARKER not in raw:
        return raw
    return _PLACEHOLDER.sub(lambda m: m.group(1), raw)


def get(event: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a canonical event, or None."""
    node: Any = event
    for part in path.split("."):
        if type(node) is not dict and not isinstance(node, Mapping):  # dict first: the ABC check is slow
            return None
        node = node.get(part)
    return node


def text(event: Mapping[str, Any], path: str) -> str | None:
    """A non-empty string field (stripped), or None. Numbers are written as text."""
    value = get(event, path)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def money(value: Any, field: str) -> Decimal | None:
    """A canonical money value (decimal string) as a Decimal; None if absent; RenderError if not a number."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise RenderError(f"{field}: expected a decimal string, got {type(value).__name__}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise RenderError(f"{field}: {value!r} is not a decimal amount") from None
    if not amount.is_finite():
        raise RenderError(f"{field}: {value!r} is not a finite amount")
    return amount


def money_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def currency(value: Any, field: str, *, required: bool = False) -> str | None:
    """A 3-letter ISO 4217 code (upper case); RenderError if malformed (or missing when required)."""
    if value is None or value == "":
        if required:
            raise RenderError(f"{field} is required (a 3-letter ISO 4217 currency code)")
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
        raise RenderError(f"{field}: expected a 3-letter ISO 4217 currency code, got {value!r}")
    return value.strip().upper()


def amount_and_currency(event: Mapping[str, Any]) -> tuple[Decimal | None, str | None]:
    """The event's value and currency: the order total for order events, else the subscription amount."""
    if get(event, "order.total") is not None:
        return money(get(event, "order.total"), "order.total"), currency(get(event, "order.currency"), "order.currency")
    if get(event, "subscription.amount") is not None:
        return (
            money(get(event, "subscription.amount"), "subscription.amount"),
            currency(get(event, "subscription.currency"), "subscription.currency"),
        )
    cur = currency(get(event, "order.currency"), "order.currency") or currency(
        get(event, "subscription.currency"), "subscription.currency"
    )
    return None, cur


def items(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    value = get(event, "order.items")
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def compact(value: Any) -> Any:
    """Drop None, empty strings, empty objects and empty lists, recursively (booleans and zeros stay)."""
    if isinstance(value, Mapping):
        out = {}
        for key, child in value.items():
            child = compact(child)
            if child is None or child == "" or child == {} or child == []:
                continue
            out[key] = child
        return out
    if isinstance(value, list):
        return [c for c in (compact(child) for child in value) if c is not None and c != "" and c != {} and c != []]
    return value


def require_name(destination_name: str | None, canonical: str, type_name: str) -> str:
    if destination_name is None:
        raise RenderError(f"event name {canonical!r} is not sent to {type_name} (add it under event_names to send it)")
    return destination_name


def event_id(event: Mapping[str, Any]) -> str:
    value = text(event, "id")
    if value is None:
        raise RenderError("the event has no id (needed as the destination's dedup key)")
    return value


def event_name(event: Mapping[str, Any]) -> str:
    value = text(event, "name")
    if value is None:
        raise RenderError("the event has no name")
    return value


def merge_headers(configured: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """The configured `headers:` plus the destination's own; the destination's win (compared without case),
    so config cannot replace authentication, content type or a required user agent by accident."""
    taken = {name.lower() for name in own}
    merged = {name: value for name, value in configured.items() if name.lower() not in taken}
    merged.update(own)
    return merged


# -- options ---------------------------------------------------------------------------------------------


def option_text(options: Mapping[str, Any], key: str, *, required: bool = False, default: str = "") -> str:
    """A string option (numbers accepted and written as text); OptionError if required and missing/empty."""
    value = options.get(key)
    if value is None or value == "":
        if required:
            raise OptionError(key, f"option {key!r} is required")
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise OptionError(key, f"option {key!r} must be text, got {type(value).__name__}")
    return str(value).strip()


def option_bool(options: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = options.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        return value.strip().lower() in ("true", "yes", "1", "on")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise OptionError(key, f"option {key!r} must be true or false, got {value!r}")


def option_choice(options: Mapping[str, Any], key: str, choices: Iterable[str], default: str) -> str:
    allowed = tuple(choices)
    value = option_text(options, key, default=default)
    if value not in allowed:
        raise OptionError(key, f"option {key!r} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_unknown_options(options: Mapping[str, Any], known: Iterable[str], type_name: str) -> None:
    known_keys = set(known)
    for key in options:
        if key not in known_keys:
            raise OptionError(key, f"unknown option {key!r} for {type_name} (known: {', '.join(sorted(known_keys))})")


def is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_http_url(url: str, key: str) -> str:
    """`url` if absolute http(s); OptionError(key) otherwise."""
    if not url or not is_http_url(url):
        raise OptionError(key, f"{key} must be an absolute http(s) URL, got {shown(url)!r}")
    return url


# -- responses -------------------------------------------------------------------------------------------


def body_text(body: bytes, limit: int = 512) -> str:
    return response_excerpt(body, limit).strip()


def with_body(outcome: Outcome, body: bytes, limit: int = 512) -> Outcome:
    """`outcome` with the start of the response body added to its reason."""
    excerpt = body_text(body, limit)
    if not excerpt:
        return outcome
    return Outcome(outcome.verdict, f"{outcome.reason}: {excerpt}", outcome.retry_after)


def classify_with(
    status: int,
    body: bytes,
    permanent: Mapping[int, str],
    transient: Mapping[int, str],
    *,
    limit: int = 512,
) -> Outcome:
    """The default table (base.classify_status) with per-status explanations, the start of the body (up to
    `limit` bytes) appended to every non-2xx reason."""
    if status in permanent:
        return with_body(Outcome(Verdict.DEAD, f"HTTP {status} {permanent[status]}"), body, limit)
    if status in transient:
        return with_body(Outcome(Verdict.RETRY, f"HTTP {status} {transient[status]}"), body, limit)
    outcome = classify_status(status)
    if outcome.verdict is Verdict.DELIVERED:
        return outcome
    return with_body(outcome, body, limit)


def json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
