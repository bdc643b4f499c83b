"""Showing a URL or a secret in a message without giving it away.

Config errors, `bridge preview` and `bridge check` name the URL they are about; a URL can carry credentials in its
user info (`https://user:password@host`) or its query (`?api_key=…`). `shown(url)` keeps what helps to recognise it
(scheme, host, path, the names of query parameters) and hides the rest.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: names of headers and query parameters whose values are credentials
SECRET_NAME = re.compile(r"auth|token|key|secret|signature|password|cookie", re.I)


def mask(value: str) -> str:
    """Keep a hint of a secret (its scheme and last 4 characters), hide the rest."""
    scheme, _, rest = value.partition(" ")
    if rest and scheme.lower() in ("bearer", "basic", "token"):
        return f"{scheme} {mask(rest)}"
    return "****" + value[-4:] if len(value) > 8 else "****"


def mask_url(url: str) -> str:
    """`url` with the values of secret-looking query parameters masked (what `bridge preview` prints)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, mask(v) if SECRET_NAME.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def shown(url: str) -> str:
    """`url` for an error message: user info replaced by `***`, secret-looking query values masked. Text that does
    not parse as a URL at all is not repeated."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        netloc = f"***@{host}" if "@" in parts.netloc else host
        return mask_url(urlunsplit(parts._replace(netloc=netloc)))
    except ValueError:
        return "(not a URL)"
