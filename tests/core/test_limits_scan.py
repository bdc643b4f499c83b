"""The raw-body scan behind limits.max_depth and the 64-bit integer bound: exact on valid JSON whatever its strings
hold (brackets, escaped quotes, escaped backslashes), and agreeing with a recursive count on random documents."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from bridge.errors import PayloadError
from bridge.limits import Limits, check_body


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def passes(body: bytes, max_depth: int = 64) -> bool:
    try:
        check_body(body, Limits(max_depth=max_depth))
    except PayloadError:
        return False
    return True


@pytest.mark.parametrize(
    ("body", "max_depth", "ok"),
    [
        (b'{"a": "[[[[[[[[[["}', 1, True),  # brackets inside strings do not nest
        (b'{"a": "]]]]]]", "b": [[[[1]]]]}', 4, False),  # nor do they cancel real ones
        (b'{"a": "\\"[[[[", "b": [[1]]}', 3, True),  # an escaped quote does not end the string
        (b'{"a": "\\\\", "b": [[[1]]]}', 3, False),  # an escaped backslash does not escape the quote
        (b'{"a": "\\\\\\"]]]]", "b": [[[1]]]}', 3, False),
        (b"[" * 64 + b"]" * 64, 64, True),
        (b"[" * 65 + b"]" * 65, 64, False),
        (b"webhook_id=" + b"[" * 100, 1, True),  # not JSON: not this scan's business
    ],
)
def test_depth_counts_only_structure(body: bytes, max_depth: int, ok: bool) -> None:
    assert passes(body, max_depth) is ok


@pytest.mark.parametrize(
    ("literal", "ok"),
    [
        (b"18446744073709551615", True),  # 2**64 - 1: orjson reads it exactly
        (b"18446744073709551616", False),
        (b"-9223372036854775808", True),
        (b"-9223372036854775809", False),
        (b"123456789012345678901234567890", False),
        (b"1" * 5000, False),  # past int()'s own digit limit: refused, not a ValueError
        (b"1.23456789012345678901234567", True),  # a float, however many digits
        (b"12345678901234567890123e2", True),
        (b"1e12345678901234567890", True),  # exponent digits
        (b'"12345678901234567890123"', True),  # text
    ],
)
def test_integers_must_fit_64_bits(literal: bytes, ok: bool) -> None:
    assert passes(b'{"n": ' + literal + b', "s": "x"}') is ok


def test_agrees_with_a_recursive_count_on_random_documents() -> None:
    rng = random.Random(8)
    leaves = [1, 'a["\\', "]]", '\\"[', 12.5, None, "x\\/y", 2**63, "{{", "é"]

    def document(level: int, deepest: int) -> Any:
        roll = rng.random()
        if level > deepest or roll < 0.25:
            return rng.choice(leaves)
        if roll < 0.65:
            return [document(level + 1, deepest) for _ in range(rng.choice([0, 1, 1, 1, 2]))]
        return {f"k{i}[": document(level + 1, deepest) for i in range(rng.choice([0, 1, 1, 2]))}

    for _ in range(1500):
        value = {"a": document(1, rng.choice([5, 20, 90]))}
        body = orjson.dumps(value)
        for limit in (3, 10, 30, 64):
            assert passes(body, limit) is (depth(value) <= limit), body[:200]
