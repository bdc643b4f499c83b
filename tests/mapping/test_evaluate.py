"""Evaluation rules: rules and conditions, null handling, coercion, source, headers, run-time errors, the MappingSet."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import MappingEvalError
from bridge.mapping import CompiledMapping, load_mappings
from tests.mapping.conftest import WriteMapping, inbound

SHOP = """\
provider: shop
defaults:
  occurred_at: "to_rfc3339(created)"
  properties.origin: "'webhook'"
events:
  order.paid:
    - name: purchase
      fields:
        id: "data.id"
        order.total: "minor_to_major(data.amount, data.currency)"
        order.currency: "data.currency"
        order.items: "data.lines[].{name: title, quantity: qty, price: decimal(price)}"
        customer.email: "data.email"
        customer.order_count: "data.orders"
        customer.tags: "data.tags"
        consent.marketing: "data.marketing"
        properties: "data.meta"
        properties.size: "data.size"
    - name: big_order
      when: "data.amount > `10000`"
      fields:
        id: "concat(data.id, ':big')"
        properties.origin: null
  order.refunded:
    name: refund
    when: "data.refunded"
    fields: {id: "data.refund_id"}
"""

DOCUMENT: dict[str, Any] = {
    "created": 1721954101,
    "data": {
        "id": "ord_1",
        "amount": 1099,
        "currency": "jpy",
        "lines": [{"title": "Mug", "qty": 2, "price": "5.50"}, {"title": "Tea", "qty": "1", "price": 3}],
        "email": None,
        "orders": "3",
        "tags": "vip, new",
        "marketing": "granted",
        "meta": {"campaign": "spring"},
        "size": {"w": 1},
    },
}


@pytest.fixture
def shop(write_mapping: WriteMapping) -> CompiledMapping:
    path = write_mapping(SHOP, name="shop")
    mapping = load_mappings(path.parent).get("shop")
    assert mapping is not None
    return mapping


def evaluate(
    mapping: CompiledMapping, document: dict[str, Any], event_type: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]] | None:
    return mapping.evaluate(
        inbound(document, event_type, "wh_1"), headers=headers or {}, source="shop-eu", provider="shop"
    )


def test_a_rule_emits_one_canonical_event(shop: CompiledMapping) -> None:
    events = evaluate(shop, DOCUMENT, "order.paid")
    assert events == [
        {
            "name": "purchase",
            "id": "ord_1",
            "occurred_at": "2024-07-26T00:35:01Z",
            "source": {"name": "shop-eu", "provider": "shop", "webhook_id": "wh_1", "webhook_type": "order.paid"},
            "customer": {"tags": ["vip", "new"], "order_count": 3},  # email null: left out
            "order": {
                "total": "1099",  # JPY has no minor unit
                "currency": "JPY",
                "items": [
                    {"name": "Mug", "price": "5.50", "quantity": 2},
                    {"name": "Tea", "price": "3", "quantity": 1},
                ],
            },
            "consent": {"marketing": True},
            "properties": {"campaign": "spring", "origin": "webhook", "size": {"w": 1}},
        }
    ]


def test_every_matching_rule_emits(shop: CompiledMapping) -> None:
    document = copy.deepcopy(DOCUMENT)
    document["data"]["amount"] = 20000
    events = evaluate(shop, document, "order.paid") or []
    assert [(e["name"], e["id"]) for e in events] == [("purchase", "ord_1"), ("big_order", "ord_1:big")]
    assert "properties" not in events[1]  # an explicit null in the rule removes the default
    assert events[1]["occurred_at"] == "2024-07-26T00:35:01Z"  # the other default still applies


def test_unmapped_type_is_none_and_unmatched_rules_give_an_empty_list(shop: CompiledMapping) -> None:
    assert evaluate(shop, DOCUMENT, "order.created") is None
    assert evaluate(shop, {"data": {"refunded": False}}, "order.refunded") == []
    assert shop.event_types == ("order.paid", "order.refunded")


def test_the_document_is_never_mutated(shop: CompiledMapping) -> None:
    document = copy.deepcopy(DOCUMENT)
    events = evaluate(shop, document, "order.paid") or []
    assert document == DOCUMENT
    events[0]["properties"]["x"] = 1
    assert "x" not in document["data"]["meta"]


def test_missing_id_is_an_evaluation_error(shop: CompiledMapping) -> None:
    with pytest.raises(MappingEvalError) as raised:
        evaluate(shop, {"created": 1, "data": {"refunded": True}}, "order.refunded")
    message = str(raised.value)
    assert message.startswith(f"{shop.path}:")
    assert "order.refunded rule 1 (refund): id: required, but 'data.refund_id' gave null" in message


def test_missing_occurred_at_is_an_evaluation_error(shop: CompiledMapping) -> None:
    with pytest.raises(MappingEvalError, match=r"purchase\): occurred_at: required, but 'to_rfc3339\(created\)'"):
        evaluate(shop, {"data": {"id": "x"}}, "order.paid")


def test_a_value_that_does_not_fit_its_field(shop: CompiledMapping) -> None:
    document = copy.deepcopy(DOCUMENT)
    document["data"]["orders"] = "many"
    with pytest.raises(MappingEvalError) as raised:
        evaluate(shop, document, "order.paid")
    message = str(raised.value)
    assert f"{shop.path}:7: order.paid rule 1 (purchase): customer.order_count: expected a whole number" in message
    assert "'data.orders'" in message


def test_money_coercion_failure_names_the_field(write_mapping: WriteMapping) -> None:
    path = write_mapping('events:\n  x:\n    name: purchase\n    fields: {id: a, occurred_at: t, order.total: "v"}\n')
    mapping = load_mappings(path.parent).get("test")
    assert mapping is not None
    with pytest.raises(MappingEvalError, match=r"x rule 1 \(purchase\): order\.total: expected money"):
        mapping.evaluate(inbound({"a": "1", "t": 1, "v": "ten"}, "x"), headers={}, source="s", provider="p")


def test_a_jmespath_runtime_failure_is_an_evaluation_error(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        'events:\n  x:\n    name: purchase\n    fields: {id: a, occurred_at: t, order.total: "abs(v)"}\n'
    )
    mapping = load_mappings(path.parent).get("test")
    assert mapping is not None
    with pytest.raises(MappingEvalError) as raised:
        mapping.evaluate(inbound({"a": "1", "t": 1, "v": "ten"}, "x"), headers={}, source="s", provider="p")
    assert "x rule 1 (purchase): order.total: " in str(raised.value)
    assert "abs()" in str(raised.value) and "(in 'abs(v)')" in str(raised.value)


def test_a_function_failure_in_when_is_an_evaluation_error(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        "events:\n  x:\n    name: purchase\n    when: \"minor_to_major(a, c) == '1.00'\"\n"
        "    fields: {id: a, occurred_at: t}\n"
    )
    mapping = load_mappings(path.parent).get("test")
    assert mapping is not None
    with pytest.raises(MappingEvalError, match=r"x rule 1 \(purchase\): when: minor_to_major\(\): 'dollars' is not"):
        mapping.evaluate(inbound({"a": 100, "t": 1, "c": "dollars"}, "x"), headers={}, source="s", provider="p")


def test_headers_are_available_only_when_referenced(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        """\
events:
  orders/paid:
    name: purchase
    when: '_headers."x-shopify-topic" == `"orders/paid"`'
    fields:
      id: "id"
      occurred_at: "created_at"
      properties.shop: '_headers."x-shopify-shop-domain"'
"""
    )
    mapping = load_mappings(path.parent).get("test")
    assert mapping is not None and mapping.uses_headers
    document = {"id": 7, "created_at": "2024-07-26T00:35:01Z"}
    headers = {"X-Shopify-Topic": "orders/paid", "X-Shopify-Shop-Domain": "a.myshopify.com"}
    events = mapping.evaluate(inbound(document, "orders/paid"), headers=headers, source="s", provider="shopify")
    assert events and events[0]["id"] == "7" and events[0]["properties"] == {"shop": "a.myshopify.com"}
    assert "_headers" not in document  # evaluated against a shallow copy


def test_headers_are_not_added_when_not_referenced(shop: CompiledMapping) -> None:
    assert not shop.uses_headers
    document = copy.deepcopy(DOCUMENT)
    document["data"]["email"] = None
    events = evaluate(shop, document, "order.paid", headers={"x-email": "a@b.c"})
    assert events and "email" not in events[0]["customer"]


def test_yaml_anchors_share_fields_between_rules(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        """\
defaults: {occurred_at: t}
events:
  a:
    name: purchase
    fields: &common
      id: "id"
      order.currency: "c"
  b:
    name: refund
    fields:
      <<: *common
      order.total: "decimal(v)"
"""
    )
    mapping = load_mappings(path.parent).get("test")
    assert mapping is not None
    events = mapping.evaluate(
        inbound({"id": "1", "t": 1, "c": "eur", "v": 2}, "b"), headers={}, source="s", provider="p"
    )
    assert events and events[0]["order"] == {"total": "2", "currency": "EUR"}


def test_constants(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        "events:\n  a:\n    name: consent_updated\n"
        "    fields: {id: i, occurred_at: 0, consent.analytics: true, customer.order_count: 1, properties.v: 1.5}\n"
    )
    mapping = load_mappings(path.parent).get("test")
    assert mapping is not None
    (event,) = mapping.evaluate(inbound({"i": "x"}, "a"), headers={}, source="s", provider="p") or []
    assert event["occurred_at"] == "1970-01-01T00:00:00Z"
    assert event["consent"] == {"analytics": True}
    assert event["customer"] == {"order_count": 1}
    assert event["properties"] == {"v": 1.5}


def test_mapping_set(write_mapping: WriteMapping) -> None:
    first = write_mapping("events:\n  a:\n    name: refund\n    fields: {id: i, occurred_at: t}\n", name="zeta")
    write_mapping("events:\n  b:\n    name: refund\n    fields: {id: i, occurred_at: t}\n", name="alpha")
    mappings = load_mappings(first.parent)
    assert mappings.names == ("alpha", "zeta")
    assert mappings.get("nope") is None
    zeta = mappings.get("zeta")
    assert zeta is not None and zeta.name == "zeta" and zeta.path == first
    assert mappings.hashes["zeta"] == hashlib.sha256(first.read_bytes()).hexdigest() == zeta.content_hash
    version = mappings.version
    assert load_mappings(first.parent).version == version
    first.write_text(first.read_text() + "# a comment changes the version\n")
    assert load_mappings(first.parent).version != version


def test_an_empty_directory_gives_an_empty_set(tmp_path: Path) -> None:
    mappings = load_mappings(tmp_path)
    assert mappings.names == () and len(mappings) == 0
