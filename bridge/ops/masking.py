"""What the status page hides unless asked: signature headers always, personal data until the viewer reveals it.

Personal data is found by field name (email, phone, names, address parts, IPs, ...) anywhere in a JSON
document, and by shape (email addresses, international phone numbers) in any other text, so a raw body that
is not JSON is masked too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

MASK = "•••"

#: header names whose values prove authenticity (or are credentials): never shown
_SIGNATURE_HEADER = re.compile(r"(sig|hmac|auth|token|secret|key|cookie|password)", re.I)

#: JSON keys whose values are personal data (compared lower-case, exact)
PII_KEYS = frozenset(
    {
        "email",
        "phone",
        "first_name",
        "last_name",
        "firstname",
        "lastname",
        "given_name",
        "family_name",
        "full_name",
        "customer_name",
        "billing_name",
        "shipping_name",
        "address",
        "address1",
        "address2",
        "address_line_1",
        "address_line_2",
        "line1",
        "line2",
        "street",
        "city",
        "postal_code",
        "postcode",
        "zip",
        "ip",
        "ip_address",
        "browser_ip",
        "client_ip",
        "user_agent",
        "date_of_birth",
        "birthdate",
        "tax_id",
        "vat_number",
        "iban",
    }
)
_PII_PART = re.compile(r"(email|phone|mobile)", re.I)
#: objects about a person, inside which a plain "name" is that person's name (elsewhere it names a product,
#: a plan or an event)
_PERSON = re.compile(r"(customer|billing|shipping|payer|buyer|owner|recipient|cardholder|contact|person|user)", re.I)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+\d[\d ()-]{6,}\d")


def mask_headers(headers: Mapping[str, Any]) -> dict[str, str]:
    return {name: MASK if _SIGNATURE_HEADER.search(name) else str(value) for name, value in headers.items()}


def _is_pii_key(key: str, parent: str) -> bool:
    lower = key.lower()
    if lower == "name":
        return bool(_PERSON.search(parent))
    return lower in PII_KEYS or bool(_PII_PART.search(lower))


def mask_text(text: str) -> str:
    return _PHONE.sub(MASK, _EMAIL.sub(MASK, text))


def mask_value(value: Any, parent: str = "") -> Any:
    """A copy of a JSON value with personal data masked (`parent`: the key the value sits under)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if _is_pii_key(str(key), parent) and not isinstance(item, dict | list) and item not in (None, ""):
                out[key] = MASK
            else:
                out[key] = mask_value(item, str(key))
        return out
    if isinstance(value, list):
        return [mask_value(item, parent) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def show_body(body: bytes | str, *, reveal: bool) -> str:
    """The raw body for display: pretty JSON when it parses, masked unless `reveal`."""
    raw = body if isinstance(body, bytes) else body.encode()
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace")
        return text if reveal else mask_text(text)
    shown = parsed if reveal else mask_value(parsed)
    return orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode()


def show_json(value: Any, *, reveal: bool) -> str:
    return orjson.dumps(value if reveal else mask_value(value), option=orjson.OPT_INDENT_2, default=str).decode()
