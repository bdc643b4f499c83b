"""The receive time as a mapping input (`_received_at`), for providers that send no time at all (Paystack's
refunds): it is the stored webhook's `received_at`, so a replay at another time gives the same `occurred_at`;
the request cannot set it; the golden runner uses a fixed time; and every shipped use is labelled."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.clock import ManualClock
from bridge.errors import MappingEvalError
from bridge.events import format_time
from bridge.mapping import load_mappings
from bridge.mapping.golden import GOLDEN_RECEIVED_AT, evaluate_case
from bridge.providers import provider_class
from bridge.providers.base import InboundEvent, SourceSettings
from bridge.providers.coverage import covered
from tests.harness import MAPPINGS, running_bridge
from tests.providers.cases import NOW, fixture
from tests.providers.signing import sign

REFUND = fixture("paystack/refund.processed.json")  # Paystack's documented refund.processed sample


async def test_paystack_refund_is_mapped_at_its_receive_time_and_a_replay_keeps_it(tmp_path: Path) -> None:
    clock = ManualClock(NOW + 0.25)
    extra = {"sources": {"paystack": {"provider": "paystack", "secrets": ["sk_test"]}}}
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra, clock=clock) as b:
        headers = sign("paystack", REFUND, secret="sk_test", now=clock.now())
        response = await b.client.post("/webhooks/paystack", content=REFUND, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"
        [webhook_id] = response.json()["webhook_ids"]
        [event] = (await b.ops("GET", f"/ops/webhooks/{webhook_id}")).json()["events"]
        assert event["name"] == "refund"
        assert event["occurred_at"] == format_time(NOW + 0.25) == "2023-11-14T22:13:20.25Z"
        assert event["properties"]["occurred_at_source"] == "received"
        assert event["order"] == {"id": "T2154954_412829_3be32076_6lcg3", "total": "50.00", "currency": "NGN"}

        clock.advance(86_400)  # a day later, the mapping is re-run: the time is the first receipt's, not now
        replay = await b.ops("POST", f"/ops/webhooks/{webhook_id}/replay", json={"dry_run": True})
        assert replay.status_code == 200, replay.text
        assert [e["occurred_at"] for e in replay.json()["canonical"]] == [event["occurred_at"]]
        assert replay.json()["events"] == {"added": [], "removed": [], "changed": []}


RECEIVED = """\
events:
  x:
    name: refund
    fields:
      id: "id"
      occurred_at: "_received_at"
      properties.occurred_at_source: "'received'"
"""


def test_the_request_cannot_set_the_receive_time(tmp_path: Path) -> None:
    mapping = load_mappings(_write(tmp_path, RECEIVED)).get("m")
    assert mapping is not None and mapping.uses_received_at
    document = {"id": "r1", "_received_at": 0}
    [event] = (
        mapping.evaluate(InboundEvent("e", "x", document), headers={}, source="s", provider="p", received_at=NOW) or []
    )
    assert event["occurred_at"] == format_time(NOW)
    assert document == {"id": "r1", "_received_at": 0}  # evaluated on a copy
    with pytest.raises(MappingEvalError, match="no receive time"):
        mapping.evaluate(InboundEvent("e", "x", document), headers={}, source="s", provider="p")


def test_a_file_that_does_not_read_it_is_not_given_it(tmp_path: Path) -> None:
    text = RECEIVED.replace('"_received_at"', '"t"')
    mapping = load_mappings(_write(tmp_path, text)).get("m")
    assert mapping is not None and not mapping.uses_received_at
    [event] = mapping.evaluate(InboundEvent("e", "x", {"id": "r", "t": 1}), headers={}, source="s", provider="p") or []
    assert event["occurred_at"] == "1970-01-01T00:00:01Z"


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "m.yaml").write_text(text)
    return tmp_path


def test_golden_cases_are_received_at_a_fixed_time() -> None:
    mapping = load_mappings(MAPPINGS).get("paystack")
    assert mapping is not None
    parse = provider_class("paystack")(SourceSettings("paystack", "paystack", ("k",))).parse
    first = evaluate_case(REFUND, {}, "paystack", parse, mapping)
    assert first == evaluate_case(REFUND, {}, "paystack", parse, mapping)
    assert first is not None and first[0]["occurred_at"] == format_time(GOLDEN_RECEIVED_AT) == "2000-01-01T00:00:00Z"


def test_every_shipped_use_of_the_receive_time_is_labelled() -> None:
    """Where occurred_at reads _received_at, the rule says so in properties.occurred_at_source."""
    uses = 0
    for name in load_mappings(MAPPINGS).names:
        mapping = load_mappings(MAPPINGS).get(name)
        assert mapping is not None
        for event_type in mapping.event_types:
            for rule in mapping.rules(event_type) or ():
                plans = {plan.path: plan.expression for plan in rule.fields}
                if "_received_at" in plans.get("occurred_at", ""):
                    uses += 1
                    assert plans.get("properties.occurred_at_source") == "'received'", (name, event_type)
    assert uses >= 1


def test_the_receive_time_counts_as_covered_by_the_signature() -> None:
    """It comes from the bridge's clock, so `bridge check` does not warn about it even where only some fields
    are signed (Mercado Pago)."""
    provider = provider_class("mercadopago")(SourceSettings("mp", "mercadopago", ("k",)))
    assert covered("_received_at", provider)
    assert not covered("date_created", provider)
