"""One strict parse per signature header: the shapes a provider's own library could read differently are refused.

Signature headers such as Stripe's `t=…,v1=…` or Paddle's `ts=…;h1=…` are read once, here, and the one result
is used both for the signed content and for the freshness check. Anything ambiguous is a SignatureError (401):

- a key given twice that may appear only once (two `t=`): libraries disagree on which one wins;
- whitespace anywhere inside the value (` t=`, `t =`): a library comparing keys exactly skips a padded key;
- an empty element (`,,`), an element without `=`, an `=` inside a value: libraries split these differently;
- a key that is a known key in another case (`T=`, `V1=`): a library ignores it, a lenient reader would not;
- non-ASCII or control characters;
- a timestamp that is not a plain decimal integer of bounded length (`+1`, `01`, `1e9`, `1_000`, `²`, 20 digits):
  libraries that call `int()` read these, and a huge value must never reach datetime or float conversions.

A request header sent twice reaches the provider as one value joined with ", " (`request_headers`), so it
is refused by the same rules rather than silently reduced to one of its copies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from bridge.errors import SignatureError

#: printable ASCII without space: what a signature header element may consist of
_TOKEN = re.compile(r"[\x21-\x7e]+")
_KEY = re.compile(r"[a-z][a-z0-9]*")
_LOWER_HEX = re.compile(r"[0-9a-f]+")

#: Unix seconds up to 11 digits (year 5138) and milliseconds up to 14: far beyond any real clock, far below
#: anything that overflows a float or a datetime
SECONDS_DIGITS = 11
MILLISECONDS_DIGITS = 14


def request_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs as a mapping of lower-case name -> value (latin-1). A name that occurs more than once
    gets its values joined with ", ", as RFC 9110 §5.3 lets a proxy do: a signature header sent twice is then one
    value that no strict parser accepts, instead of whichever copy a dict happens to keep."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def token(value: str, what: str, *, max_length: int = 1024) -> str:
    """`value` if it is printable ASCII without whitespace and at most `max_length` long; SignatureError otherwise."""
    if not value or len(value) > max_length or not _TOKEN.fullmatch(value):
        raise SignatureError(f"{what} is empty, too long or has characters a signature header never has")
    return value


def parse_params(
    value: str,
    *,
    header: str,
    separator: str,
    single: frozenset[str],
    repeated: frozenset[str] = frozenset(),
    unknown: str = "ignore",
) -> dict[str, list[str]]:
    """`k=v<separator>k=v…` read strictly: every key of `single` at most once, keys of `repeated` any number of
    times, other well-formed lower-case keys ignored (`unknown="ignore"`, Stripe's future schemes) or refused
    (`unknown="refuse"`, Paddle's SDK raises on them). Keys differing from a known key only by case are refused.
    Returns key -> values in order (known keys only)."""
    token(value, header, max_length=4096)
    known = single | repeated
    folded = {key.lower(): key for key in known}
    found: dict[str, list[str]] = {}
    for element in value.split(separator):
        key, equals, item = element.partition("=")
        if not equals or not item or "=" in item:
            raise SignatureError(f"{header} has an element that is not exactly one key=value")
        if not _KEY.fullmatch(key):
            if key.lower() in folded:
                raise SignatureError(f"{header} has the key {folded[key.lower()]!r} in another case")
            raise SignatureError(f"{header} has a malformed key")
        if key not in known:
            if unknown == "refuse":
                raise SignatureError(f"{header} has an unknown key")
            continue
        values = found.setdefault(key, [])
        if values and key in single:
            raise SignatureError(f"{header} has {key}= more than once")
        values.append(item)
    return found


def split_list(value: str, *, header: str, separator: str) -> list[str]:
    """A `separator`-joined list of tokens with no empty element and no whitespace (Recurly's `ts,sig,sig`,
    Standard Webhooks' space-separated `v1,sig v1,sig`)."""
    if separator != " ":
        token(value, header, max_length=4096)
    elif len(value) > 4096 or not all(_TOKEN.fullmatch(part) for part in value.split(" ")):
        raise SignatureError(f"{header} is not a list separated by single spaces")
    parts = value.split(separator)
    if not all(parts):
        raise SignatureError(f"{header} has an empty element")
    return parts


def integer(text: str, what: str, *, max_digits: int) -> int:
    """A non-negative decimal integer in its one canonical spelling (ASCII digits, no sign, no leading zero, at
    most `max_digits`), or SignatureError. Range-checked before any arithmetic or conversion."""
    if not (0 < len(text) <= max_digits and text.isascii() and text.isdigit()) or (len(text) > 1 and text[0] == "0"):
        raise SignatureError(f"{what} is not a plain integer of at most {max_digits} digits")
    return int(text)


def is_lower_hex(value: str) -> bool:
    return _LOWER_HEX.fullmatch(value) is not None


def one_family(headers: Mapping[str, str], families: tuple[str, ...], names: tuple[str, ...], what: str) -> str:
    """The one header prefix (of `families`, e.g. "webhook-" / "svix-") the request uses for `names`. A request
    carrying the same header under two prefixes with different values is refused: which one a library reads
    depends on its lookup order."""
    chosen: str | None = None
    for family in families:
        if not any(headers.get(family + name, "").strip() for name in names):
            continue
        if chosen is None:
            chosen = family
            continue
        for name in names:
            if headers.get(chosen + name, "").strip() != headers.get(family + name, "").strip():
                raise SignatureError(f"{what} headers are sent under both {chosen}* and {family}* with other values")
    return chosen or families[0]
