"""The canonical event model: one shape between every provider and every destination.

A canonical event is a plain JSON-ready dict (so it is stored, diffed and sent without conversion):

    {"name": "purchase", "id": "pi_123", "occurred_at": "2024-01-15T14:30:45Z",
     "source": {...}, "customer": {...}, "order": {...}, "subscription": {...},
     "consent": {...}, "context": {...}, "properties": {...}}

Money is a decimal string ("54.98"), never a float; times are RFC 3339 UTC strings. Consent flags are booleans:
true = granted, false = denied, absent = unknown (`consent.ad_user_data` and `consent.ad_personalization` are
Google's consent-mode signals and gate ad platforms; `consent.marketing` is the opt-in to marketing messages). Raw
personal data (customer.*, context.ip, context.user_agent, the click and browser ids) is carried as given;
each destination normalises and hashes it by its own rules (bridge.privacy) when it renders. `FIELDS` lists every
known field with its kind; mapping files are checked against it when they load and every produced event is
normalised by `normalize` before it is stored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

CANONICAL_NAMES = (
    "purchase",
    "refund",
    "subscription_started",
    "subscription_renewed",
    "subscription_updated",
    "subscription_canceled",
    "payment_failed",
    "trial_started",
    "contract_updated",
    "consent_updated",
)
CUSTOM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# kinds: string, money, time, int, bool, strings (list of strings), items (list of item objects), object (free-form)
_ADDRESS = ("line1", "line2", "city", "region", "region_code", "postal_code", "country_code")
_ITEM_FIELDS: dict[str, str] = {
    "sku": "string",
    "product_id": "string",
    "variant_id": "string",
    "name": "string",
    "brand": "string",
    "category": "string",
    "variant": "string",
    "price": "money",
    "quantity": "int",
    "compare_at_price": "money",
    "image": "string",
    "inventory": "int",
    "cogs": "money",
}

FIELDS: dict[str, str] = {
    "name": "string",
    "id": "string",
    "occurred_at": "time",
    "source.name": "string",
    "source.provider": "string",
    "source.webhook_id": "string",
    "source.webhook_type": "string",
    "customer.id": "string",
    "customer.external_id": "string",
    "customer.email": "string",
    "customer.phone": "string",
    "customer.first_name": "string",
    "customer.last_name": "string",
    **{f"customer.address.{f}": "string" for f in _ADDRESS},
    "customer.tags": "strings",
    "customer.order_count": "int",
    "customer.total_spent": "money",
    "order.id": "string",
    "order.number": "string",
    "order.total": "money",
    "order.subtotal": "money",
    "order.tax": "money",
    "order.shipping": "money",
    "order.discount": "money",
    "order.currency": "currency",
    "order.coupon": "string",
    "order.channel": "string",
    "order.location_id": "string",
    "order.items": "items",
    "subscription.id": "string",
    "subscription.plan": "string",
    "subscription.status": "string",
    "subscription.interval": "string",
    "subscription.amount": "money",
    "subscription.currency": "currency",
    "subscription.started_at": "time",
    "subscription.current_period_end": "time",
    "subscription.contract_end_date": "time",
    "subscription.trial_end": "time",
    "subscription.canceled_at": "time",
    "subscription.cancel_reason": "string",
    "consent.analytics": "bool",
    "consent.marketing": "bool",
    "consent.ad_user_data": "bool",
    "consent.ad_personalization": "bool",
    **{
        f"context.{f}": "string"
        for f in (
            "ip",
            "user_agent",
            "page_url",
            "referrer",
            "landing_site",
            "session_id",
            "visitor_id",
            "gclid",
            "fbclid",
            "msclkid",
            "ttclid",
            "client_id",
            "fbp",
            "fbc",
            "ttp",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
        )
    },
    "properties": "object",
}
ITEM_FIELDS = _ITEM_FIELDS
# Prefixes under which any key is allowed.
FREE_FORM_PREFIXES = ("properties.",)


def is_known_field(path: str) -> bool:
    """Whether `path` (dotted) is a canonical field a mapping may set."""
    return path in FIELDS or path.startswith(FREE_FORM_PREFIXES)


def is_valid_name(name: str) -> bool:
    return name in CANONICAL_NAMES or bool(CUSTOM_NAME.match(name))


class FieldValueError(ValueError):
    """A value does not fit its canonical field."""


#: Money is bounded: at most this many significant digits, and a decimal exponent (the power of ten of the
#: leading digit) within ±MONEY_MAX_EXPONENT. Printed in full, "1e20000000" is 20 MB of digits.
MONEY_MAX_DIGITS = 40
MONEY_MAX_EXPONENT = 30
#: longer text is no amount, whatever it holds (checked before parsing it)
MONEY_MAX_TEXT = 100


def parse_decimal(text: str) -> Decimal:
    """A Decimal from text (raises InvalidOperation), refusing text too long to be an amount before parsing it."""
    text = text.strip()
    if len(text) > MONEY_MAX_TEXT:
        raise InvalidOperation(f"longer than {MONEY_MAX_TEXT} characters")
    return Decimal(text)


def money_out_of_range(amount: Decimal) -> str | None:
    """Why a finite `amount` is no plausible amount of money (too large or too small, or too many digits), or
    None."""
    exponent = amount.adjusted()
    if not -MONEY_MAX_EXPONENT <= exponent <= MONEY_MAX_EXPONENT:
        return f"its exponent {exponent:+d} is beyond ±{MONEY_MAX_EXPONENT}"
    digits = len(amount.as_tuple().digits)
    if digits > MONEY_MAX_DIGITS:
        return f"{digits} significant digits, more than {MONEY_MAX_DIGITS}"
    return None


def shorten(value: Any, limit: int = 40) -> str:
    """`repr(value)` cut to `limit` characters, for messages about values that may be huge."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_money(value: Any) -> str:
    """An exact decimal string for a money value (int, Decimal or a numeric string; floats via their repr).

    Not finite, more than MONEY_MAX_DIGITS significant digits or an exponent beyond ±MONEY_MAX_EXPONENT:
    FieldValueError (the webhook is kept as mapping_failed).
    """
    if isinstance(value, bool):
        raise FieldValueError(f"expected money, got a boolean ({value!r})")
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, float):
        d = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            d = parse_decimal(value)
        except InvalidOperation:
            raise FieldValueError(f"expected money (a decimal number), got text {shorten(value)}") from None
    else:
        raise FieldValueError(f"expected money, got {type(value).__name__}")
    if not d.is_finite():
        raise FieldValueError(f"expected a finite amount, got {shorten(value)}")
    problem = money_out_of_range(d)
    if problem:
        raise FieldValueError(f"amount {shorten(value)} is out of range: {problem}")
    return format(d, "f")


def to_time(value: Any) -> str:
    """An RFC 3339 UTC timestamp from epoch seconds or an ISO 8601 string."""
    if isinstance(value, bool):
        raise FieldValueError(f"expected a time, got a boolean ({value!r})")
    if isinstance(value, int | float):
        try:
            return format_time(float(value))
        except (OverflowError, ValueError, OSError):
            raise FieldValueError(f"epoch seconds {shorten(value)} are out of range") from None
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise FieldValueError(f"expected an ISO 8601 time, got {shorten(value)}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            return format_datetime(parsed)
        except OverflowError:  # year 1 or 9999 pushed past the calendar by its UTC offset
            raise FieldValueError(f"time {shorten(value)} is out of range") from None
    raise FieldValueError(f"expected a time, got {type(value).__name__}")


def format_time(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC))


def format_datetime(moment: datetime) -> str:
    """RFC 3339 in UTC, `Z`, fractions without trailing zeros. `isoformat` writes every year with four digits
    (strftime's `%Y` wrote year 1 as "1", which no RFC 3339 parser takes)."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    text = utc.isoformat()
    return (text.rstrip("0") if utc.microsecond else text) + "Z"


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise FieldValueError(f"expected text, got {type(value).__name__}")


INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # whole-number fields are 64-bit, as every destination stores them


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise FieldValueError(f"expected a whole number, got a boolean ({value!r})")
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and len(value) <= 40:
        try:
            number = int(value.strip())
        except ValueError:
            pass
    if number is None:
        raise FieldValueError(f"expected a whole number, got {shorten(value)}")
    if not INT_MIN <= number <= INT_MAX:
        raise FieldValueError(f"whole number {shorten(value)} does not fit 64 bits")
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "granted", "denied"):
        return value.strip().lower() in ("true", "yes", "granted")
    raise FieldValueError(f"expected true or false, got {value!r}")


def _to_currency(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
        raise FieldValueError(f"expected a 3-letter ISO 4217 currency code, got {value!r}")
    return value.strip().upper()


def _to_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [_to_string(v) for v in value if v is not None]
    raise FieldValueError(f"expected a list of text, got {type(value).__name__}")


def _to_items(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise FieldValueError(f"expected a list of items, got {type(value).__name__}")
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise FieldValueError(f"item {index}: expected an object, got {type(item).__name__}")
        clean: dict[str, Any] = {}
        for key, raw in item.items():
            if raw is None:
                continue
            kind = _ITEM_FIELDS.get(key)
            if kind is None:
                raise FieldValueError(f"item {index}: unknown item field {key!r} (known: {', '.join(_ITEM_FIELDS)})")
            try:
                clean[key] = coerce(kind, raw)
            except FieldValueError as exc:
                raise FieldValueError(f"item {index}.{key}: {exc}") from None
        items.append(clean)
    return items


def coerce(kind: str, value: Any) -> Any:
    """Convert `value` to the canonical representation of `kind`, or raise FieldValueError."""
    if kind == "string":
        return _to_string(value)
    if kind == "money":
        return to_money(value)
    if kind == "time":
        return to_time(value)
    if kind == "int":
        return _to_int(value)
    if kind == "bool":
        return _to_bool(value)
    if kind == "currency":
        return _to_currency(value)
    if kind == "strings":
        return _to_strings(value)
    if kind == "items":
        return _to_items(value)
    if kind == "object":
        if not isinstance(value, dict):
            raise FieldValueError(f"expected an object, got {type(value).__name__}")
        return value
    raise FieldValueError(f"unknown field kind {kind!r}")


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in nested dicts, creating the parents."""
    parts = path.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def get_path(source: dict[str, Any], path: str) -> Any:
    node: Any = source
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
