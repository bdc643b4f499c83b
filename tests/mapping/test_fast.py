"""The compiled closures (fast.py) agree with jmespath's own interpreter, expression by expression."""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest

from bridge.mapping import fast
from bridge.mapping.functions import OPTIONS
from tests.mapping.conftest import STRIPE_FIXTURES, stripe_mappings


def outcome(run: Any) -> tuple[str, Any]:
    try:
        return ("value", run())
    except Exception as exc:
        return ("error", type(exc).__name__)


def same(expression: str, document: Any) -> None:
    parsed = jmespath.compile(expression)
    interpreted = outcome(lambda: parsed.search(document, OPTIONS))
    compiled = outcome(lambda: fast.build(parsed.parsed)(document))
    assert compiled == interpreted, expression
    if compiled[0] == "value":
        assert type(compiled[1]) is type(interpreted[1]), expression


def shipped_expressions() -> list[str]:
    mapping = stripe_mappings().get("stripe")
    assert mapping is not None
    found = set()
    for event_type in mapping.event_types:
        for rule in mapping.rules(event_type) or ():
            if rule.when_text:
                found.add(rule.when_text)
            found.update(plan.expression for plan in rule.fields)
    return sorted(found)


DOCUMENTS = [json.loads(path.read_text()) for path in sorted(STRIPE_FIXTURES.glob("*.json"))]


@pytest.mark.parametrize("expression", shipped_expressions())
def test_shipped_expressions(expression: str) -> None:
    for document in DOCUMENTS:
        same(expression, document)
    same(expression, {})
    same(expression, None)
    same(expression, [1, 2])


SAMPLE = {
    "a": {"b": {"c": 1}, "list": [{"x": 1, "y": "one"}, {"x": 2, "y": "two"}, {"x": None}], "zero": 0},
    "t": True,
    "f": False,
    "s": "text",
    "n": None,
    "e": "",
    "nested": [[1, 2], [3], 4],
    "obj": {"k1": {"v": 1}, "k2": {"v": 2}},
}

SYNTHETIC = [
    "a.b.c",
    "a.b.c.d",
    "s.length",
    "a.list[0].y",
    "a.list[-1].x",
    "a.list[5]",
    "a.list[].x",
    "a.list[*].y",
    "a.list[?x > `1`].y",
    "a.list[1:].x",
    "obj.*.v",
    "nested[]",
    "nested[][]",
    "a.{first: b.c, second: zero}",
    "[a.zero, t, n]",
    "n.{x: y}",
    "n.[x]",
    "a.zero == `false`",
    "a.zero == `0`",
    "t == `1`",
    "a.zero != f",
    "a.b.c < `2`",
    "s > `1`",
    "!a.zero",
    "!e",
    "!a.list",
    "e || s",
    "a.zero || s",
    "f && s",
    "t && s",
    "n && s",
    "a.list | [0]",
    "@",
    '`{"k": [1, 2]}`',
    "'raw'",
    "length(a.list)",
    "sort_by(a.list[:2], &x)[].y",
    "max_by(a.list[:2], &x).y",
    "map(&x, a.list)",
    "join(', ', a.list[:2].y)",
    "contains(s, 'ex')",
    "not_null(n, e, s)",
    "merge(obj, a)",
    "upper(s)",
    "upper(a)",
    "concat(s, n, `1`)",
    "minor_to_major(a.b.c, 'usd', 'stripe')",
    "minor_to_major(a.b.c, s)",
    "to_rfc3339(s)",
    "coalesce(n, e, s)",
    "default(e, 'x')",
    "abs(s)",
]


@pytest.mark.parametrize("expression", SYNTHETIC)
def test_node_types(expression: str) -> None:
    same(expression, SAMPLE)
    same(expression, {})
    same(expression, None)
