"""The custom JMESPath functions, through both evaluation paths (jmespath's interpreter and the compiled closures)."""

from __future__ import annotations

from typing import Any

import jmespath
import pytest
from jmespath.exceptions import JMESPathError

from bridge.events import FieldValueError, coerce, to_money, to_time
from bridge.mapping import fast
from bridge.mapping.functions import (
    ISO_THREE_DECIMAL,
    ISO_ZERO_DECIMAL,
    OPTIONS,
    STRIPE_ZERO_DECIMAL,
    FunctionArgumentError,
    currency_exponent,
    minor_to_major,
)


def run(expression: str, document: Any = None) -> Any:
    """Evaluate with jmespath's interpreter and with fast.py's closures; both must agree."""
    document = {} if document is None else document
    interpreted = jmespath.search(expression, document, OPTIONS)
    compiled = fast.build(jmespath.compile(expression).parsed)(document)
    assert compiled == interpreted and type(compiled) is type(interpreted)
    return compiled


def fails(expression: str, document: Any = None) -> str:
    """Both paths raise a JMESPath error; returns the message."""
    document = {} if document is None else document
    with pytest.raises(JMESPathError) as interpreted:
        jmespath.search(expression, document, OPTIONS)
    with pytest.raises(JMESPathError) as compiled:
        fast.build(jmespath.compile(expression).parsed)(document)
    assert type(compiled.value) is type(interpreted.value)
    return str(compiled.value)


# -- minor_to_major ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (1099, "USD", "10.99"),
        (1099, "usd", "10.99"),
        (100, "usd", "1.00"),
        (5, "eur", "0.05"),
        (0, "usd", "0.00"),
        (-1099, "usd", "-10.99"),
        (500, "JPY", "500"),
        (500, "jpy", "500"),
        (1099, "krw", "1099"),
        (1234, "KWD", "1.234"),
        (1234, "kwd", "1.234"),
        (5, "bhd", "0.005"),
        (12345, "CLF", "1.2345"),
        ("2000.5", "usd", "20.005"),  # Stripe's unit_amount_decimal is a decimal string
    ],
)
def test_minor_to_major(amount: Any, currency: str, expected: str) -> None:
    assert run("minor_to_major(a, c)", {"a": amount, "c": currency}) == expected


def test_minor_to_major_null_in_null_out() -> None:
    assert run("minor_to_major(a, 'usd')", {}) is None
    assert run("minor_to_major(`1099`, c)", {}) is None


def test_minor_to_major_is_exact_beyond_float_precision() -> None:
    big = 2**53 + 1  # not representable as a float
    assert run("minor_to_major(a, 'usd')", {"a": big}) == "90071992547409.93"
    assert run("minor_to_major(a, 'usd')", {"a": 10**30 + 1}) == "10000000000000000000000000000.01"
    for cents in (1, 7, 10, 29, 99, 101, 1005, 123456789):
        assert minor_to_major(cents, "usd") == f"{cents // 100}.{cents % 100:02d}"


def test_currency_lists_follow_iso_4217() -> None:
    assert {"JPY", "KRW", "VND", "CLP", "ISK", "XAF", "XOF", "XPF"} <= ISO_ZERO_DECIMAL
    assert ISO_THREE_DECIMAL == {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
    for code in ISO_ZERO_DECIMAL:
        assert currency_exponent(code.lower()) == 0
    for code in ISO_THREE_DECIMAL:
        assert currency_exponent(code) == 3
    for code in ("USD", "EUR", "GBP", "MGA", "HUF", "TWD", "IDR"):
        assert currency_exponent(code) == 2


def test_stripe_convention() -> None:
    # ISK is zero-decimal in ISO 4217 but two-decimal in Stripe's API; MGA the other way round
    assert run("minor_to_major(`100`, 'isk')") == "100"
    assert run("minor_to_major(`100`, 'isk', 'stripe')") == "1.00"
    assert run("minor_to_major(`500`, 'mga')") == "5.00"
    assert run("minor_to_major(`500`, 'mga', 'stripe')") == "500"
    assert run("minor_to_major(`1234`, 'kwd', 'stripe')") == "1.234"
    assert {code for code in STRIPE_ZERO_DECIMAL if currency_exponent(code, "stripe") != 0} == set()


def test_minor_to_major_rejects_bad_input() -> None:
    assert "not a 3-letter" in fails("minor_to_major(`1`, 'dollars')")
    assert "unknown convention" in fails("minor_to_major(`1`, 'usd', 'paypal')")
    fails("minor_to_major(`true`, 'usd')")  # booleans are not amounts (jmespath type check)
    assert "not a decimal number" in fails("minor_to_major('12x', 'usd')")
    with pytest.raises(FunctionArgumentError):
        minor_to_major(True, "usd")


# -- time -------------------------------------------------------------------------------------------------


def test_to_rfc3339() -> None:
    assert run("to_rfc3339(t)", {"t": 1721954101}) == "2024-07-26T00:35:01Z"
    assert run("to_rfc3339(t)", {"t": 1721954101.5}) == "2024-07-26T00:35:01.5Z"
    assert run("to_rfc3339(t)", {"t": "2024-07-26T02:35:01+02:00"}) == "2024-07-26T00:35:01Z"
    assert run("to_rfc3339(t)", {"t": "2024-07-26T00:35:01Z"}) == "2024-07-26T00:35:01Z"
    assert run("to_rfc3339(t)", {}) is None
    assert "ISO 8601" in fails("to_rfc3339('yesterday')")


def test_from_ms() -> None:
    assert run("from_ms(t)", {"t": 1721954101123}) == "2024-07-26T00:35:01.123Z"
    assert run("from_ms(t)", {"t": 1721954101000}) == "2024-07-26T00:35:01Z"
    assert run("from_ms(t)", {}) is None
    fails("from_ms('1721954101000')")


# -- text -------------------------------------------------------------------------------------------------


def test_upper_lower() -> None:
    assert run("upper(c)", {"c": "usd"}) == "USD"
    assert run("lower(c)", {"c": "USD"}) == "usd"
    assert run("upper(c)", {}) is None
    assert run("lower(c)", {}) is None
    fails("upper(`12`)")


def test_concat() -> None:
    assert run("concat(a, ':', b)", {"a": "sub_1", "b": "started"}) == "sub_1:started"
    assert run("concat(a, missing, ':x')", {"a": "in_1"}) == "in_1:x"  # nulls are skipped
    assert run("concat(a, ':failed:', n)", {"a": "in_1", "n": 2}) == "in_1:failed:2"
    assert run("concat(`true`)") == "true"
    assert run("concat(a, b)", {}) is None  # nothing to join
    fails("concat(o)", {"o": {"k": 1}})


def test_default() -> None:
    assert run("default(v, 'x')", {}) == "x"
    assert run("default(v, 'x')", {"v": ""}) == "x"
    assert run("default(v, 'x')", {"v": "y"}) == "y"
    assert run("default(v, 'x')", {"v": 0}) == 0
    assert run("default(v, 'x')", {"v": False}) is False


def test_coalesce() -> None:
    assert run("coalesce(a, b, c, d, e)", {"b": "", "c": [], "d": {}, "e": "x"}) == "x"
    assert run("coalesce(a, b)", {"a": 0, "b": 1}) == 0
    assert run("coalesce(a)", {"a": {}}) is None  # one argument: an empty value becomes null
    assert run("coalesce(a)", {"a": {"k": "v"}}) == {"k": "v"}
    assert run("coalesce(a, b)", {}) is None


def test_split() -> None:
    assert run("split(s, ',')", {"s": "vip, wholesale,,new "}) == ["vip", "wholesale", "new"]
    assert run("split(s, ',')", {}) is None
    assert "separator" in fails("split('a', '')")


def test_has() -> None:
    assert run("has(p, 'cancel_at')", {"p": {"cancel_at": None}}) is True
    assert run("has(p, 'cancel_at')", {"p": {}}) is False
    assert run("has(p, 'cancel_at')", {}) is False
    assert run("has(p, 'x')", {"p": ["x"]}) is False


# -- numbers ----------------------------------------------------------------------------------------------


def test_decimal() -> None:
    assert run("decimal(v)", {"v": 12}) == "12"
    assert run("decimal(v)", {"v": "12.50"}) == "12.50"
    assert run("decimal(v)", {"v": " 12.50 "}) == "12.50"
    assert run("decimal(v)", {"v": 0.1}) == "0.1"  # a float via its shortest repr, never 0.1000000000000000055...
    assert run("decimal(v)", {"v": 54.98}) == "54.98"
    assert run("decimal(v)", {}) is None
    assert "not a decimal number" in fails("decimal('abc')")
    assert "finite" in fails("decimal('NaN')")


def test_mul() -> None:
    assert run("mul(a, b)", {"a": 2000, "b": 3}) == 6000
    assert run("mul(a, b)", {"a": 2000, "b": "1.5"}) == "3000.0"
    assert run("mul(a, b)", {"a": 2000}) is None
    assert run("sum(items[].mul(p, q))", {"items": [{"p": 2000, "q": 2}, {"p": 500, "q": 1}, {"p": None}]}) == 4500


def test_mul_is_exact_beyond_28_digits() -> None:
    assert run("mul(a, b)", {"a": 10**30 + 1, "b": "1.5"}) == "1500000000000000000000000000001.5"


# -- bounds -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    ["1e20000000", "1e31", "-1e31", "1e-31", "0E-50", "1." + "1" * 40, "1" * 101, 10**31, 1e300, 1e-300],
)
def test_amounts_beyond_the_bounds_are_refused_not_printed(amount: Any) -> None:
    # printed in full, 1e20000000 is 20 MB of digits
    for expression in ("decimal(a)", "minor_to_major(a, 'usd')", "mul(`1`, a)"):
        message = fails(expression, {"a": amount})
        assert any(words in message for words in ("out of range", "not a decimal number", "64 bits")), message
        assert len(message) < 300
    with pytest.raises(FieldValueError):
        to_money(amount)


def test_amounts_at_the_bounds_stay_exact() -> None:
    widest = "1" * 31 + "." + "2" * 9  # 40 significant digits, exponent +30
    assert to_money(widest) == widest
    assert to_money("1e30") == "1" + "0" * 30
    assert to_money("1e-30") == "0." + "0" * 29 + "1"
    assert run("decimal(a)", {"a": widest}) == widest
    assert run("minor_to_major(a, 'usd')", {"a": 10**30}) == "1" + "0" * 28 + ".00"


def test_a_product_beyond_the_bounds_is_refused() -> None:
    assert "does not fit 64 bits" in fails("mul(a, b)", {"a": 2**62, "b": 4})
    assert "out of range" in fails("mul(a, b)", {"a": 1e20, "b": "1e20"})


@pytest.mark.parametrize(("kind", "value"), [("int", "99999999999999999999"), ("int", 2**63), ("int", -(2**63) - 1)])
def test_whole_numbers_fit_64_bits(kind: str, value: Any) -> None:
    with pytest.raises(FieldValueError, match="does not fit 64 bits"):
        coerce(kind, value)
    assert coerce("int", 2**63 - 1) == 2**63 - 1


@pytest.mark.parametrize("value", [1e300, -1e300, "9999-12-31T23:59:59-10:00"])
def test_times_beyond_the_calendar_are_field_errors(value: Any) -> None:
    with pytest.raises(FieldValueError, match="out of range"):
        to_time(value)
    if isinstance(value, float):
        assert "out of range" in fails("from_ms(t)", {"t": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0001-01-01T05:00:00Z", "0001-01-01T05:00:00Z"),
        ("0999-05-01T00:00:00.250+02:00", "0999-04-30T22:00:00.25Z"),
        (-30610224001, "0999-12-31T23:59:59Z"),
        ("2026-12-02T01:02:03.120000Z", "2026-12-02T01:02:03.12Z"),
        (1796176614.5, "2026-12-02T01:56:54.5Z"),
    ],
)
def test_times_are_rfc3339_with_a_four_digit_year(value: Any, expected: str) -> None:
    """Years before 1000 were written without their leading zeros ("1-01-01T05:00:00Z"), which is not RFC 3339:
    a destination's parser refuses it. Every year has four digits."""
    assert to_time(value) == expected
    assert run("from_ms(t)", {"t": -30610224001000}) == "0999-12-31T23:59:59Z"
