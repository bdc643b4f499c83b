"""A rule's `ordering_key:` and `sequence:` (the entity whose events a `by_key` destination delivers in order, and
the provider's sequence number), checked at load like fields, and what routing makes of them."""

from __future__ import annotations

from pathlib import Path

import orjson

from bridge.destinations.base import DestinationSettings
from bridge.destinations.http import DESTINATION as HttpDestination
from bridge.ingest import route
from bridge.mapping import check_mappings, compile_file
from bridge.outbox.base import Ordering
from bridge.providers.base import InboundEvent
from tests.mapping.conftest import WriteMapping

# a made-up provider document: what matters here is the engine, not any provider's shape
MAPPING = """\
provider: example
events:
  subscription_renewed:
    - name: subscription_renewed
      ordering_key: "entity.customer_id"
      sequence: "entity.version"
      fields:
        id: "id"
        occurred_at: "to_rfc3339(occurred_at)"
        subscription.id: "entity.id"
  subscription_cancelled:
    - name: subscription_canceled
      fields:
        id: "id"
        occurred_at: "to_rfc3339(occurred_at)"
        subscription.id: "entity.id"
"""


def renewed(version: int | None = 1700000000123) -> InboundEvent:
    entity: dict[str, object] = {"id": "sub_9", "customer_id": "cust_4"}
    if version is not None:
        entity["version"] = version
    document = {"id": "ev_1", "occurred_at": 1700000000, "entity": entity}
    return InboundEvent("ev_1", "subscription_renewed", document)


def evaluate(path: Path, event: InboundEvent) -> list[dict[str, object]]:
    mapping, errors = compile_file(path)
    assert not errors and mapping is not None, errors
    events = mapping.evaluate(event, headers={}, source="example-eu", provider="example")
    assert events is not None
    return events


def test_the_rule_declares_the_key_and_the_providers_sequence(write_mapping: WriteMapping) -> None:
    [event] = evaluate(write_mapping(MAPPING), renewed())
    assert (event["ordering_key"], event["sequence"]) == ("cust_4", 1700000000123)
    [unsequenced] = evaluate(write_mapping(MAPPING), renewed(version=None))
    assert "sequence" not in unsequenced  # null: ordered by occurred_at, then arrival
    canceled = InboundEvent("ev_2", "subscription_cancelled", {**renewed().document, "id": "ev_2"})
    [plain] = evaluate(write_mapping(MAPPING), canceled)
    assert "ordering_key" not in plain and "sequence" not in plain  # the default: the canonical entity id


def test_the_expressions_are_checked_at_load_with_their_place(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        MAPPING.replace('"entity.version"', "\"to_rfc3339('x')\"").replace('"entity.customer_id"', '"entity..x"')
    )
    errors = check_mappings(path.parent)
    assert [(e.line, e.column, e.message.split(":")[0]) for e in errors] == [
        (5, 29, "JMESPath syntax error"),  # the second dot of `entity..x`
        (6, 18, "sequence"),
    ], [str(e) for e in errors]
    assert "expected int" in errors[1].message


def test_routing_orders_only_for_by_key_destinations() -> None:
    event = {
        "name": "subscription_renewed",
        "id": "in_1:renewed",
        "occurred_at": "2024-07-26T00:35:07.250Z",
        "source": {"name": "stripe-eu", "provider": "stripe", "webhook_id": "evt_1", "webhook_type": "invoice.paid"},
        "customer": {"id": "cus_1"},
        "order": {"id": "in_1"},
        "subscription": {"id": "sub_1"},
    }
    ordered = HttpDestination(DestinationSettings(name="a", type="http", url="http://h/a", ordering="by_key"))
    free = HttpDestination(DestinationSettings(name="b", type="http", url="http://h/b"))
    first, second = route([event], {"a": ordered, "b": free})
    assert first.ordering == Ordering("stripe-eu:sub_1", 1721954107.25, 0)  # the subscription is the entity
    assert second.ordering is None
    assert orjson.loads(first.payload) == event
    declared = {**event, "ordering_key": "cus_1", "sequence": 42}
    [mine] = route([declared], {"a": ordered})
    assert mine.ordering == Ordering("stripe-eu:cus_1", 1721954107.25, 42)
    purchase = {k: v for k, v in event.items() if k != "subscription"}
    [by_order] = route([purchase], {"a": ordered})
    assert by_order.ordering is not None and by_order.ordering.key == "stripe-eu:in_1"
