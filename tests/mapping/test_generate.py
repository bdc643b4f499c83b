"""Each rule's generated function (generate.py) gives what jmespath's own interpreter gives, field by field: for every
rule of every shipped mapping, on every fixture document of its provider and on documents of the wrong shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jmespath
import pytest

from bridge.events import FieldValueError, set_path
from bridge.mapping import compile_file
from bridge.mapping.evaluate import CompiledMapping, Rule
from bridge.mapping.fast import is_false
from bridge.mapping.functions import OPTIONS
from bridge.mapping.generate import CoerceFailed, FieldFailed, WhenFailed
from tests.mapping.conftest import FIXTURES, MAPPINGS

ODD_DOCUMENTS: list[Any] = [{}, None, [1, 2], "text", {"data": None}, {"data": {"object": []}}]


def reference(rule: Rule, document: Any) -> tuple[str, Any]:
    """What the rule gives by interpreting each expression with jmespath, then coercing and placing the value."""
    if rule.when_text is not None:
        try:
            matched = jmespath.compile(rule.when_text).search(document, OPTIONS)
        except Exception as exc:
            return ("when failed", type(exc).__name__)
        if is_false(matched):
            return ("no match", None)
    values: dict[str, Any] = {}
    for index, plan in enumerate(rule.fields):
        try:
            if plan.node is None:
                value = plan.get(document)  # a constant
            else:
                value = jmespath.compile(plan.expression).search(document, OPTIONS)
        except Exception as exc:
            return ("field failed", (index, type(exc).__name__))
        if value is None:
            continue
        if plan.coerce is not None:
            try:
                value = plan.coerce(value)
            except FieldValueError as exc:
                return ("coerce failed", (index, str(exc)))
        if plan.copy and isinstance(value, dict):
            value = dict(value)
        set_path(values, plan.path, value)
    return ("values", values)


def generated(rule: Rule, document: Any) -> tuple[str, Any]:
    try:
        values = rule.run(document)
    except WhenFailed as failed:
        return ("when failed", type(failed.cause).__name__)
    except FieldFailed as failed:
        return ("field failed", (failed.index, type(failed.cause).__name__))
    except CoerceFailed as failed:
        return ("coerce failed", (failed.index, str(failed.cause)))
    return ("no match", None) if values is None else ("values", values)


def documents(provider: str) -> list[Any]:
    found = []
    for path in sorted((FIXTURES / provider).glob("*.json")) if (FIXTURES / provider).is_dir() else []:
        if path.name.endswith(".expected.json"):
            continue
        try:
            found.append(json.loads(path.read_bytes()))
        except ValueError:
            continue
    return found


def mapping(path: Path) -> CompiledMapping:
    compiled, errors = compile_file(path)
    assert not errors and compiled is not None, errors
    return compiled


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_rule_agrees_with_jmespath(path: Path) -> None:
    compiled = mapping(path)
    corpus = documents(path.stem) + ODD_DOCUMENTS
    rules = [rule for event_type in compiled.event_types for rule in compiled.rules(event_type) or ()]
    assert rules
    for rule in rules:
        for document in corpus:
            got, want = generated(rule, document), reference(rule, document)
            assert got == want, (rule.event_type, rule.index, rule.run.__doc__)


def test_expressions_beyond_plain_paths(tmp_path: Path) -> None:
    """Comparisons, &&/||/!, literals, calls, projections, filters, pipes and paths below an index, and a field
    whose expression raises, each against the interpreter."""
    source = tmp_path / "kinds.yaml"
    source.write_text(
        """
provider: test
events:
  thing:
    - name: purchase
      when: "kind == 'a' || (!flag && count > `2`)"
      fields:
        id: "id"
        occurred_at: "created"
        order.total: "amount"
        order.currency: "upper(currency)"
        customer.email: "contact.email || contact.backup"
        properties.tags: "items[*].tag"
        properties.first: "items[0].tag"
        properties.expensive: "items[?price > `10`].tag"
        properties.joined: "join(',', items[*].tag)"
        properties.piped: "items | length(@)"
        properties.same: "kind != 'b'"
        properties.whole: "contact"
        properties.whole_name: "contact.name"
""",
        encoding="utf-8",
    )
    compiled = mapping(source)
    [rule] = compiled.rules("thing") or ()
    base = {
        "id": "t1",
        "created": 1_700_000_000,
        "kind": "a",
        "flag": False,
        "count": 3,
        "amount": "12.50",
        "currency": "eur",
        "contact": {"email": None, "backup": "b@example.com", "name": "N"},
        "items": [{"tag": "x", "price": 5}, {"tag": "y", "price": 20}, {"price": 1}],
    }
    variants = [
        base,
        {**base, "kind": "b", "flag": True},  # no match
        {**base, "kind": "b", "count": 1},  # no match
        {**base, "kind": "b", "count": "3"},  # ordering a string: null, no match
        {**base, "currency": 5},  # upper() of a number raises: the field fails
        {**base, "items": "none"},  # projections of a non-list give null
        {**base, "contact": "plain"},
        {**base, "amount": "twelve"},  # not money: coercion fails
    ]
    for document in variants:
        assert generated(rule, document) == reference(rule, document), (document, rule.run.__doc__)
