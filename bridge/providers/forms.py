"""Helpers the form-encoded and digest-signed providers share (Braintree, Maxio, Paystack, FastSpring, Recharge).

- `digest_header`: one signature header read strictly (printable ASCII, no whitespace, bounded length, the
  encoding's alphabet): a header sent twice reaches a provider as one value joined with ", " and is refused.
- `check_digest`: constant-time comparison of a received digest with the digests of every configured secret.
- `form_fields`: an `application/x-www-form-urlencoded` body split strictly (every field name once unless
  listed as repeatable), and `nested_form`: Rails-style `payload[subscription][id]=…` keys as nested objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import unquote_plus

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import any_digest_matches

_HEX = re.compile(r"[0-9a-f]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_FORM_NAME = re.compile(r"[A-Za-z0-9_.\-]+(\[[A-Za-z0-9_.\-]*\])*")
MAX_SIGNATURE_LENGTH = 1024


def digest_header(headers: Mapping[str, str], name: str, *, encoding: Literal["hex", "base64"], length: int) -> str:
    """The value of signature header `name`: exactly `length` characters of lower-case hex or standard base64.
    SignatureError when it is missing, padded, repeated (joined with ", ") or of another shape."""
    value = headers.get(name)
    if value is None or not value:
        raise SignatureError(f"missing {name} header")
    pattern = _HEX if encoding == "hex" else _BASE64
    if len(value) != length or not pattern.fullmatch(value):
        raise SignatureError(f"{name} is not one {length}-character {encoding} digest")
    return value


def check_digest(received: str, secrets: Iterable[str], digest: Callable[[bytes], str], *, header: str) -> None:
    """SignatureError unless `received` equals `digest(secret)` for one of `secrets` (constant time)."""
    expected = [digest(secret.encode()) for secret in secrets]
    if not any_digest_matches(expected, [received]):
        raise SignatureError(f"{header} does not match a configured secret")


def form_fields(body: bytes, *, repeatable: bool = False) -> list[tuple[str, str]]:
    """The (name, value) pairs of a form-encoded body, in order, percent- and plus-decoded as UTF-8.
    PayloadError when it is not a form body; a field name sent twice is refused unless `repeatable`."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise PayloadError("a form-encoded body must be ASCII (percent-encoded)") from None
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for element in text.split("&") if text else []:
        raw_name, equals, raw_value = element.partition("=")
        if not equals:
            raise PayloadError("a form field has no '='")
        try:
            name = unquote_plus(raw_name, errors="strict")
            value = unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise PayloadError("a form field is not UTF-8 once percent-decoded") from None
        if not repeatable and name in seen:
            raise PayloadError(f"the form field {name[:60]!r} is sent twice")
        seen.add(name)
        pairs.append((name, value))
    return pairs


def nested_form(pairs: Iterable[tuple[str, str]], *, max_depth: int = 8) -> dict[str, Any]:
    """Rails-style bracket names as nested objects: `a[b][c]=1` -> {"a": {"b": {"c": "1"}}}. A name repeated
    with several values keeps them all, in order, as a list (Maxio sends arrays of objects that way).
    PayloadError when a name is malformed, too deep, or both a value and an object."""
    root: dict[str, Any] = {}
    for name, value in pairs:
        if not _FORM_NAME.fullmatch(name):
            raise PayloadError(f"malformed form field name {name[:60]!r}")
        head, _, rest = name.partition("[")
        path = [head] + ([part.rstrip("]") for part in rest.split("[")] if rest else [])
        if len(path) > max_depth or any(not part for part in path):
            raise PayloadError(f"form field name {name[:60]!r} is too deep or has an empty [] part")
        node = root
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PayloadError(f"form field {name[:60]!r} is both a value and an object")
            node = child
        leaf = path[-1]
        if leaf not in node:
            node[leaf] = value
        elif isinstance(node[leaf], dict):
            raise PayloadError(f"form field {name[:60]!r} is both a value and an object")
        elif isinstance(node[leaf], list):
            node[leaf].append(value)
        else:
            node[leaf] = [node[leaf], value]
    return root
