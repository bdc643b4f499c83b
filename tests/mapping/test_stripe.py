"""mappings/stripe.yaml against the golden cases and the decisions behind it (ids, period ends, refunds)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bridge.errors import MappingEvalError
from bridge.mapping.golden import case_names, run_golden_cases
from tests.mapping.conftest import FIXTURES, STRIPE_FIXTURES, inbound, stripe_mappings

MAPPINGS = stripe_mappings()
STRIPE = MAPPINGS.get("stripe")
assert STRIPE is not None


def body(case: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((STRIPE_FIXTURES / f"{case}.json").read_text())
    return document


def evaluate(document: dict[str, Any]) -> list[dict[str, Any]] | None:
    assert STRIPE is not None
    event = inbound(document, document["type"], document["id"])
    return STRIPE.evaluate(event, headers={}, source="stripe", provider="stripe")


def names(events: list[dict[str, Any]] | None) -> list[str]:
    return [event["name"] for event in events or []]


def test_every_stripe_golden_case_passes() -> None:
    report = run_golden_cases(FIXTURES, MAPPINGS, only="stripe")
    assert report.failed == [], report.summary()
    assert sorted(report.passed) == [f"stripe/{case}" for case in case_names(STRIPE_FIXTURES)]
    assert len(report.passed) >= 15


def test_every_mapped_type_has_a_golden_case() -> None:
    assert STRIPE is not None
    covered = {body(case)["type"] for case in case_names(STRIPE_FIXTURES)}
    assert set(STRIPE.event_types) <= covered


def test_one_payment_one_purchase() -> None:
    checkout = evaluate(body("checkout.session.completed")) or []
    async_paid = evaluate(body("checkout.session.async_payment_succeeded")) or []
    intent = evaluate(body("payment_intent.succeeded")) or []
    assert names(checkout) == names(async_paid) == names(intent) == ["purchase"]
    assert checkout[0]["id"] == async_paid[0]["id"] == intent[0]["id"] == "pi_1PgafyB7WZ01zgkWSjxsAJo3"
    assert checkout[0]["order"]["total"] == intent[0]["order"]["total"] == "10.99"
    assert checkout[0]["order"]["id"] == intent[0]["order"]["id"]


def test_checkout_purchase_needs_a_paid_one_off_payment() -> None:
    assert evaluate(body("checkout.session.completed.unpaid")) == []
    subscription_mode = body("checkout.session.completed")
    subscription_mode["data"]["object"]["mode"] = "subscription"
    assert evaluate(subscription_mode) == []


def test_checkout_amounts_use_the_currency_exponent() -> None:
    document = body("checkout.session.completed")
    document["data"]["object"]["currency"] = "jpy"
    (event,) = evaluate(document) or []
    assert event["order"]["total"] == "1099" and event["order"]["currency"] == "JPY"
    document["data"]["object"]["currency"] = "kwd"
    (event,) = evaluate(document) or []
    assert event["order"]["total"] == "1.099"


def test_invoice_payment_intents_are_not_purchases() -> None:
    document = body("payment_intent.succeeded")
    document["data"]["object"]["invoice"] = "in_1Pgc6tB7WZ01zgkWu9fdqL6I"  # API versions before basil
    assert evaluate(document) == []


def _subscription_update(previous: dict[str, Any]) -> dict[str, Any]:
    document = body("customer.subscription.updated")
    document["data"]["previous_attributes"] = previous
    return document


def test_subscription_update_without_period_change_is_no_contract_update() -> None:
    events = evaluate(_subscription_update({"collection_method": "send_invoice"}))
    assert names(events) == ["subscription_updated"]
    assert evaluate(_subscription_update({})) and names(evaluate(_subscription_update({}))) == ["subscription_updated"]
    no_previous = body("customer.subscription.updated")
    del no_previous["data"]["previous_attributes"]
    assert names(evaluate(no_previous)) == ["subscription_updated"]


def test_top_level_current_period_end_is_a_contract_update() -> None:
    """Before API version basil the period end is a top-level subscription field."""
    document = _subscription_update({"current_period_end": 1719276054})
    document["data"]["object"]["current_period_end"] = 1721954454
    events = evaluate(document) or []
    assert names(events) == ["subscription_updated", "contract_updated"]
    contract = events[1]
    assert contract["id"] == f"{document['id']}:contract"
    assert contract["subscription"]["current_period_end"] == "2024-07-26T00:40:54Z"
    assert contract["properties"]["previous_current_period_end"] == "2024-06-25T00:40:54Z"


def test_item_current_period_end_is_a_contract_update() -> None:
    """Basil and later: the period end lives on the subscription items (as in the fixture)."""
    events = evaluate(body("customer.subscription.updated.period_end")) or []
    assert names(events) == ["subscription_updated", "contract_updated"]
    assert events[1]["subscription"]["current_period_end"] == "2000-12-08T15:02:53Z"
    assert events[1]["properties"]["previous_current_period_end"] == "2000-11-07T15:02:53Z"


def test_item_changes_without_period_change_are_no_contract_update() -> None:
    document = body("customer.subscription.updated")
    previous_items = copy.deepcopy(document["data"]["object"]["items"])
    previous_items["data"][0]["quantity"] = 2
    document["data"]["previous_attributes"] = {"items": previous_items}
    assert names(evaluate(document)) == ["subscription_updated"]


def test_scheduled_cancellation_is_a_contract_update() -> None:
    events = evaluate(body("customer.subscription.updated.cancel_at")) or []
    assert names(events) == ["subscription_updated", "contract_updated"]
    assert events[1]["subscription"]["contract_end_date"] == "2009-02-13T23:31:30Z"  # cancel_at


def test_trial_conversion_starts_the_subscription_once() -> None:
    created = body("customer.subscription.created")
    created["data"]["object"]["status"] = "trialing"
    assert names(evaluate(created)) == ["trial_started"]
    converted = evaluate(body("customer.subscription.updated.trial_ended")) or []
    assert names(converted) == ["subscription_updated", "subscription_started"]
    started = evaluate(body("customer.subscription.created")) or []
    assert converted[1]["id"] == started[0]["id"] == "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw:started"


def test_refund_id_is_the_newest_refund_or_a_stable_fallback() -> None:
    (refund,) = evaluate(body("charge.refunded")) or []
    assert refund["id"] == "re_1Pgc72B7WZ01zgkWqPvrRrPE"
    assert refund["order"] == {"id": "ch_1PgafuB7WZ01zgkWXYmPNZs8", "total": "1.00", "currency": "USD"}
    without_list = body("charge.refunded")
    del without_list["data"]["object"]["refunds"]  # API versions that no longer embed charge.refunds
    without_list["data"]["object"]["payment_intent"] = "pi_1PgafyB7WZ01zgkWSjxsAJo3"
    (fallback,) = evaluate(without_list) or []
    assert fallback["id"] == "ch_1PgafuB7WZ01zgkWXYmPNZs8:refunded:100"
    assert fallback["order"]["id"] == "pi_1PgafyB7WZ01zgkWSjxsAJo3"  # the purchase's id
    assert fallback["order"]["total"] == "1.00"


def test_renewal_only_for_subscription_cycles() -> None:
    assert names(evaluate(body("invoice.paid"))) == ["subscription_renewed"]
    assert evaluate(body("invoice.paid.manual")) == []


def test_invoice_subscription_id_before_basil() -> None:
    document = body("invoice.paid")
    document["data"]["object"]["subscription"] = "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"
    (event,) = evaluate(document) or []
    assert event["subscription"]["id"] == "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw"


def test_each_failed_attempt_is_its_own_fact() -> None:
    document = body("invoice.payment_failed")
    first = (evaluate(document) or [])[0]["id"]
    document["data"]["object"]["attempt_count"] = 2
    second = (evaluate(document) or [])[0]["id"]
    assert (first, second) == ("in_1Pgc6tB7WZ01zgkWu9fdqL6I:failed:1", "in_1Pgc6tB7WZ01zgkWu9fdqL6I:failed:2")


def test_unmapped_type_is_ignored() -> None:
    assert evaluate(body("plan.created")) is None


@pytest.mark.parametrize(
    ("case", "path", "value", "field"),
    [
        ("checkout.session.completed", ("currency",), "dollars", "order.total"),
        ("customer.subscription.updated", ("start_date",), "not a time", "subscription.started_at"),
        ("invoice.paid", ("id",), None, "id"),
    ],
)
def test_bad_payload_values_fail_with_the_field_named(case: str, path: tuple[str, ...], value: Any, field: str) -> None:
    document = body(case)
    target = document["data"]["object"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(MappingEvalError) as raised:
        evaluate(document)
    assert f"{document['type']} rule 1 " in str(raised.value)
    assert f"): {field}: " in str(raised.value)
