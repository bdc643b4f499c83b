"""The JMESPath functions mapping files may call, besides the JMESPath built-ins.

Money never passes through a float: amounts come in as JSON integers (orjson gives `int` for integral numbers)
or decimal strings and go out as exact decimal strings. Every function maps null to null unless said otherwise,
so a missing field in a webhook leaves the canonical field out instead of failing.

`FUNCTIONS` is the one `Functions` instance used by every compiled mapping; `SPECS` describes every callable
function (built-in and custom) for load-time checks: how many arguments it takes and what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import MAX_PREC, Context, Decimal, InvalidOperation
from typing import Any, TypeVar

import jmespath
from jmespath import functions as jp_functions
from jmespath.exceptions import JMESPathError, JMESPathTypeError

from bridge.events import (
    INT_MAX,
    INT_MIN,
    FieldValueError,
    format_datetime,
    money_out_of_range,
    parse_decimal,
    shorten,
    to_time,
)


class FunctionArgumentError(JMESPathError):  # type: ignore[misc]  # jmespath is untyped
    """A custom function got a value it cannot work with (a bad currency code, text that is no number, ...)."""


# ISO 4217 minor-unit exponents that are not 2 (every other active code has 2).
ISO_ZERO_DECIMAL = frozenset("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split())
ISO_THREE_DECIMAL = frozenset("BHD IQD JOD KWD LYD OMR TND".split())
ISO_FOUR_DECIMAL = frozenset("CLF UYW".split())
# Stripe's API convention (https://docs.stripe.com/currencies): its own zero-decimal list (MGA is zero-decimal
# at Stripe but 2 in ISO 4217; ISK is 0 in ISO 4217 but "remains a two-decimal currency in the Stripe API").
STRIPE_ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
STRIPE_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
CONVENTIONS = ("iso", "stripe")


_EXPONENTS: dict[tuple[str, str], int] = {}
_EXACT = Context(prec=MAX_PREC)  # products of decimals without rounding


def currency_exponent(currency: str, convention: str = "iso") -> int:
    """The number of minor-unit digits of `currency` (case-insensitive) under `convention` ("iso" or "stripe")."""
    known = _EXPONENTS.get((currency, convention))
    if known is None:
        known = _EXPONENTS[(currency, convention)] = _exponent(currency, convention)
        if len(_EXPONENTS) > 4096:  # bounded: currency values come from webhooks
            _EXPONENTS.clear()
    return known


def _exponent(currency: str, convention: str) -> int:
    code = currency.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise FunctionArgumentError(f"minor_to_major(): {currency!r} is not a 3-letter ISO 4217 currency code")
    if convention == "iso":
        if code in ISO_ZERO_DECIMAL:
            return 0
        if code in ISO_THREE_DECIMAL:
            return 3
        return 4 if code in ISO_FOUR_DECIMAL else 2
    if convention == "stripe":
        if code in STRIPE_ZERO_DECIMAL:
            return 0
        return 3 if code in STRIPE_THREE_DECIMAL else 2
    raise FunctionArgumentError(f"minor_to_major(): unknown convention {convention!r} (known: iso, stripe)")


def to_decimal(value: Any, what: str) -> Decimal:
    """An exact Decimal from an int, a decimal string or (via its shortest repr) a float, within the bounds of
    money (bridge.events.MONEY_MAX_DIGITS and MONEY_MAX_EXPONENT)."""
    if isinstance(value, bool):
        raise FunctionArgumentError(f"{what}: expected a number, got a boolean")
    if isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = parse_decimal(value)
        except InvalidOperation:
            raise FunctionArgumentError(f"{what}: {shorten(value)} is not a decimal number") from None
    else:
        raise FunctionArgumentError(f"{what}: expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise FunctionArgumentError(f"{what}: {shorten(value)} is not a finite number")
    return _bounded(result, value, what)


def _bounded(result: Decimal, value: Any, what: str) -> Decimal:
    problem = money_out_of_range(result)
    if problem:
        raise FunctionArgumentError(f"{what}: {shorten(value)} is out of range: {problem}")
    return result


def minor_to_major(amount: Any, currency: Any, convention: str = "iso") -> str | None:
    """`amount` in minor units (cents) as an exact decimal string in major units: (1099, "usd") -> "10.99"."""
    if amount is None or currency is None:
        return None
    if not isinstance(currency, str):
        raise FunctionArgumentError(f"minor_to_major(): currency must be text, got {type(currency).__name__}")
    exponent = currency_exponent(currency, convention)
    sign, digits, power = to_decimal(amount, "minor_to_major()").as_tuple()
    # shift the exponent by hand: Decimal arithmetic (scaleb, /) would round to the context's 28 digits
    return format(_bounded(Decimal((sign, digits, int(power) - exponent)), amount, "minor_to_major()"), "f")


def scale(amount: Any, power: Any) -> str | None:
    """`amount` x 10**`power` as exact decimal text without trailing fractional zeros: (10990, -3) -> "10.99"
    (Apple's milli-units), (549500000, -8) -> "5.495". `power` is a whole number between -30 and 30."""
    if amount is None:
        return None
    if isinstance(power, bool) or not isinstance(power, int | float) or power != int(power) or abs(power) > 30:
        raise FunctionArgumentError(f"scale(): the power must be a whole number between -30 and 30, got {power!r}")
    sign, digits, exponent = to_decimal(amount, "scale()").as_tuple()
    shifted = Decimal((sign, digits, int(exponent) + int(power)))  # by hand: no rounding to the context's digits
    text = format(shifted, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


_SIZED = (str, list, dict)


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, _SIZED) and len(value) == 0)


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    raise FunctionArgumentError(f"{what}: cannot turn {type(value).__name__} into text")


_F = TypeVar("_F", bound=Callable[..., Any])


def signature(*arguments: dict[str, Any]) -> Callable[[_F], _F]:
    """jmespath's `@signature` (argument types checked before the call), typed for mypy."""
    decorate: Callable[[_F], _F] = jp_functions.signature(*arguments)
    return decorate


_ANY: dict[str, Any] = {"types": []}
_TEXT: dict[str, Any] = {"types": ["string", "null"]}
_NUMERIC: dict[str, Any] = {"types": ["number", "string", "null"]}


class BridgeFunctions(jp_functions.Functions):  # type: ignore[misc]  # jmespath is untyped
    """JMESPath built-ins plus the bridge's functions (each `_func_<name>` is callable as `<name>(...)`)."""

    @signature(_NUMERIC, {"types": ["string", "null"], "variadic": True})
    def _func_minor_to_major(self, amount: Any, currency: Any, *rest: Any) -> str | None:
        if len(rest) > 1:
            raise FunctionArgumentError(f"minor_to_major() takes 2 or 3 arguments, got {2 + len(rest)}")
        convention = rest[0] if rest and rest[0] is not None else "iso"
        return minor_to_major(amount, currency, convention)

    @signature(_NUMERIC, {"types": ["number"]})
    def _func_scale(self, amount: Any, power: Any) -> str | None:
        return scale(amount, power)

    @signature(_NUMERIC)
    def _func_decimal(self, value: Any) -> str | None:
        return None if value is None else format(to_decimal(value, "decimal()"), "f")

    @signature({"types": ["number", "null"]}, {"types": ["number", "string", "null"]})
    def _func_mul(self, left: Any, right: Any) -> int | str | None:
        if left is None or right is None:
            return None
        if type(left) is int and type(right) is int:
            product = left * right
            if not INT_MIN <= product <= INT_MAX:
                raise FunctionArgumentError(f"mul(): {shorten(left)} × {shorten(right)} does not fit 64 bits")
            return product
        exact = _EXACT.multiply(to_decimal(left, "mul()"), to_decimal(right, "mul()"))
        return format(_bounded(exact, exact, "mul()"), "f")

    @signature({"types": ["number", "string", "null"]})
    def _func_to_rfc3339(self, value: Any) -> str | None:
        if value is None:
            return None
        try:
            return to_time(value)
        except FieldValueError as exc:
            raise FunctionArgumentError(f"to_rfc3339(): {exc}") from None

    @signature({"types": ["number", "null"]})
    def _func_from_ms(self, value: Any) -> str | None:
        if value is None:
            return None
        try:
            return format_datetime(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value))
        except (OverflowError, ValueError):
            raise FunctionArgumentError(f"from_ms(): {shorten(value)} milliseconds are out of range") from None

    @signature(_TEXT)
    def _func_upper(self, value: Any) -> str | None:
        return None if value is None else str(value).upper()

    @signature(_TEXT)
    def _func_lower(self, value: Any) -> str | None:
        return None if value is None else str(value).lower()

    @signature({"types": ["string", "number", "boolean", "null"], "variadic": True})
    def _func_concat(self, *parts: Any) -> str | None:
        present = [_text(part, "concat()") for part in parts if part is not None]
        return "".join(present) if present else None

    @signature(_ANY, _ANY)
    def _func_default(self, value: Any, fallback: Any) -> Any:
        return fallback if value is None or value == "" else value

    @signature({"types": [], "variadic": True})
    def _func_coalesce(self, *values: Any) -> Any:
        for value in values:
            if not _is_empty(value):
                return value
        return None

    @signature(_TEXT, {"types": ["string"]})
    def _func_split(self, value: Any, separator: str) -> list[str] | None:
        if value is None:
            return None
        if not separator:
            raise FunctionArgumentError("split(): the separator must not be empty")
        return [part.strip() for part in value.split(separator) if part.strip()]

    @signature({"types": []}, {"types": ["string"]})
    def _func_has(self, value: Any, key: str) -> bool:
        return isinstance(value, dict) and key in value


FUNCTIONS = BridgeFunctions()
OPTIONS = jmespath.Options(custom_functions=FUNCTIONS)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What the load-time checks know about a function."""

    name: str
    min_args: int
    max_args: int | None  # None: variadic
    returns: str | None  # a result category (see analysis.py) or None when it depends on the arguments
    custom: bool


# Result categories of each function, for the field-kind checks.
_RETURNS: dict[str, str | None] = {
    "minor_to_major": "decimal",
    "decimal": "decimal",
    "scale": "decimal",
    "mul": None,
    "to_rfc3339": "time",
    "from_ms": "time",
    "upper": "text",
    "lower": "text",
    "concat": "text",
    "split": "array",
    "has": "boolean",
    "abs": "number",
    "avg": "number",
    "ceil": "number",
    "floor": "number",
    "length": "number",
    "sum": "number",
    "to_number": "number",
    "contains": "boolean",
    "starts_with": "boolean",
    "ends_with": "boolean",
    "join": "text",
    "to_string": "text",
    "type": "text",
    "keys": "array",
    "values": "array",
    "sort": "array",
    "sort_by": "array",
    "map": "array",
    "to_array": "array",
    "merge": "object",
}
_ARITY_OVERRIDES: dict[str, tuple[int, int | None]] = {"minor_to_major": (2, 3), "coalesce": (1, None)}
CUSTOM_NAMES = frozenset(
    name for name in BridgeFunctions.FUNCTION_TABLE if name not in jp_functions.Functions.FUNCTION_TABLE
)


def _build_specs() -> dict[str, FunctionSpec]:
    specs: dict[str, FunctionSpec] = {}
    table: dict[str, dict[str, Any]] = BridgeFunctions.FUNCTION_TABLE
    for name, entry in table.items():
        signature: tuple[dict[str, Any], ...] = entry["signature"]
        variadic = bool(signature and signature[-1].get("variadic"))
        low, high = _ARITY_OVERRIDES.get(name, (len(signature), None if variadic else len(signature)))
        specs[name] = FunctionSpec(name, low, high, _RETURNS.get(name), name in CUSTOM_NAMES)
    return specs


SPECS: dict[str, FunctionSpec] = _build_specs()

#: Checks of literal arguments at load time: function name -> (argument index, check returning an error or None).
LiteralCheck = Callable[[Any], str | None]


def _check_convention(value: Any) -> str | None:
    if value is None or value in CONVENTIONS:
        return None
    return f"unknown convention {value!r} (known: {', '.join(CONVENTIONS)})"


def _check_currency(value: Any) -> str | None:
    if value is None:
        return None
    code = value.strip() if isinstance(value, str) else ""
    if len(code) == 3 and code.isascii() and code.isalpha():
        return None
    return f"{value!r} is not a 3-letter ISO 4217 currency code"


LITERAL_CHECKS: dict[str, tuple[tuple[int, LiteralCheck], ...]] = {
    "minor_to_major": ((1, _check_currency), (2, _check_convention)),
}

#: How to call each custom function, shown in hints.
USAGE: dict[str, str] = {
    "minor_to_major": "minor_to_major(amount, currency) or minor_to_major(amount, currency, 'stripe')",
    "decimal": "decimal(value)",
    "scale": "scale(amount, power), e.g. scale(price, `-3`) for milli-units",
    "mul": "mul(number, number)",
    "to_rfc3339": "to_rfc3339(epoch_seconds_or_iso_text)",
    "from_ms": "from_ms(epoch_milliseconds)",
    "upper": "upper(text)",
    "lower": "lower(text)",
    "concat": "concat(a, b, ...)",
    "default": "default(value, fallback)",
    "coalesce": "coalesce(a, b, ...)",
    "split": "split(text, separator)",
    "has": "has(object, 'key')",
}

_PYTYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "string": (str,),
    "null": (type(None),),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def direct_call(name: str) -> Callable[..., Any] | None:
    """A caller for a custom function that skips jmespath's generic dispatch but keeps its type checks.

    jmespath checks the types of the first len(signature) arguments by exact type name on every call; this does
    the same with precomputed type sets (the argument count is checked once at load time). None for built-ins.
    """
    if name not in CUSTOM_NAMES:
        return None
    entry = BridgeFunctions.FUNCTION_TABLE[name]
    method = entry["function"].__get__(FUNCTIONS)
    checks: list[tuple[int, frozenset[type], list[str]]] = []
    for index, parameter in enumerate(entry["signature"]):
        declared: list[str] = parameter["types"]
        if declared:
            allowed = frozenset(t for kind in declared for t in _PYTYPES[kind])
            checks.append((index, allowed, declared))

    def call(*args: Any) -> Any:
        for index, allowed, declared in checks:
            if type(args[index]) not in allowed:
                actual = jp_functions.TYPES_MAP.get(type(args[index]).__name__, "unknown")
                raise JMESPathTypeError(name, args[index], actual, declared)
        return method(*args)

    return call
