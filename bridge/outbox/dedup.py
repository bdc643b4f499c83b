"""The dedup rules, in one place for both stores.

Webhook keys (table `webhook_keys`), per source:
  ("event", provider event id)   a provider's retry of an event it already sent
  ("body", SHA-256 of the body)  the same signed bytes again, whatever the unsigned headers now say (a replay
                                 under a new X-Shopify-Webhook-Id, WooCommerce delivery id, topic, ...)
A request whose body key is known is a duplicate as a whole. Otherwise each provider event whose event key is
known is a duplicate, and the others are new. Delivery keys (table `delivery_keys`): one fact (source,
destination, event name, canonical event id) is delivered once, so two provider events describing one payment
make one delivery per destination, and two stores (two sources) with the same order number make two.

Keys are rows of their own: purging webhooks and deliveries leaves them, so an old event replayed after the
purge is still a duplicate. A key is removed only once it is older than the dedup horizon AND the row it names is
gone (`purge_keys`).

Nothing here does I/O. The planning functions serve the single-writer SQLite store, which reads the known keys
first and then writes in the same transaction; PostgreSQL reaches the same decisions with `ON CONFLICT DO
NOTHING` on the key tables (concurrent writers), and both use `remap_actions` for replays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.outbox.base import IngestResult, NewDelivery, NewRequest, RemapAction

EVENT = "event"
BODY = "body"

#: (source, kind, key)
WebhookKey = tuple[str, str, str]
#: (source, destination, event name, event id)
DeliveryKey = tuple[str, str, str, str]
#: (destination, event name, event id): a delivery's key within its source
Fact = tuple[str, str, str]


def body_key(body: bytes) -> str:
    """The body's dedup key: SHA-256, lower-case hex."""
    return hashlib.sha256(body).hexdigest()


def fact(delivery: NewDelivery) -> Fact:
    return (delivery.destination, delivery.event_name, delivery.event_id)


def unique_facts(deliveries: Sequence[NewDelivery]) -> list[NewDelivery]:
    """The first delivery of each fact, in order."""
    firsts: dict[Fact, NewDelivery] = {}
    for delivery in deliveries:
        firsts.setdefault(fact(delivery), delivery)
    return list(firsts.values())


class Ids:
    """Row ids handed out in order from the last one used (the single writer assigns ids itself, so one batch
    needs no RETURNING round trip to learn them)."""

    def __init__(self, last: int) -> None:
        self.last = last

    def take(self) -> int:
        self.last += 1
        return self.last


@dataclass
class PlannedWebhook:
    """A new webhook row of a planned request, and the index of its result."""

    id: int
    request_index: int
    webhook_index: int


@dataclass
class IngestPlan:
    """What one batch of requests writes, given the keys already stored."""

    results: list[list[IngestResult | None]]
    #: (request id, request index) of each request that stores something
    requests: list[tuple[int, int]] = field(default_factory=list)
    webhooks: list[PlannedWebhook] = field(default_factory=list)
    #: (source, kind, key, webhook id, seen at) to insert
    webhook_keys: list[tuple[str, str, str, int, float]] = field(default_factory=list)


def plan_webhooks(
    requests: Sequence[NewRequest],
    body_keys: Sequence[str],
    known: Mapping[WebhookKey, int],
    request_ids: Ids,
    webhook_ids: Ids,
) -> IngestPlan:
    """Decide, request by request in order, which provider events are new. `known` maps stored keys to their
    webhook ids; keys claimed by an earlier request of the same batch count as stored for the later ones."""
    seen = dict(known)
    plan = IngestPlan(results=[[None] * len(request.webhooks) for request in requests])
    for index, (request, body) in enumerate(zip(requests, body_keys, strict=True)):
        body_id = seen.get((request.source, BODY, body))
        if body_id is not None:  # the same bytes again: nothing new in it, whatever the headers claim
            for position, webhook in enumerate(request.webhooks):
                event_id = seen.get((request.source, EVENT, webhook.provider_event_id), body_id)
                plan.results[index][position] = IngestResult(event_id, True, 0)
            continue
        fresh = False
        first_id: int | None = None
        for position, webhook in enumerate(request.webhooks):
            key = (request.source, EVENT, webhook.provider_event_id)
            existing = seen.get(key)
            if existing is None:
                new_id = webhook_ids.take()
                seen[key] = new_id
                plan.webhook_keys.append((*key, new_id, request.received_at))
                plan.webhooks.append(PlannedWebhook(new_id, index, position))
                fresh = True
                existing = new_id
            else:
                plan.results[index][position] = IngestResult(existing, True, 0)
            first_id = existing if first_id is None else first_id
        if first_id is not None:
            seen[(request.source, BODY, body)] = first_id
            plan.webhook_keys.append((request.source, BODY, body, first_id, request.received_at))
        if fresh:
            plan.requests.append((request_ids.take(), index))
    return plan


def request_keys(request: NewRequest, body: str) -> Iterator[WebhookKey]:
    """The webhook keys a request is checked against: its body and each provider event id."""
    yield (request.source, BODY, body)
    for webhook in request.webhooks:
        yield (request.source, EVENT, webhook.provider_event_id)


def delivery_candidates(requests: Sequence[NewRequest], plan: IngestPlan) -> Iterator[DeliveryKey]:
    """The delivery keys the new webhooks of `plan` would create (to look up which are stored already)."""
    for planned in plan.webhooks:
        request = requests[planned.request_index]
        for delivery in request.webhooks[planned.webhook_index].deliveries:
            yield (request.source, *fact(delivery))


@dataclass
class PlannedDelivery:
    id: int
    webhook_id: int
    delivery: NewDelivery
    created_at: float


def plan_deliveries(
    requests: Sequence[NewRequest], plan: IngestPlan, known: set[DeliveryKey], delivery_ids: Ids
) -> tuple[list[PlannedDelivery], list[tuple[str, str, str, str, int, float]]]:
    """The deliveries of the new webhooks whose keys are neither stored nor taken by an earlier one, with the
    delivery key rows to insert; fills in the new webhooks' results."""
    taken = set(known)
    rows: list[PlannedDelivery] = []
    keys: list[tuple[str, str, str, str, int, float]] = []
    for planned in plan.webhooks:
        request = requests[planned.request_index]
        created = 0
        for delivery in request.webhooks[planned.webhook_index].deliveries:
            key = (request.source, *fact(delivery))
            if key in taken:
                continue
            taken.add(key)
            delivery_id = delivery_ids.take()
            rows.append(PlannedDelivery(delivery_id, planned.id, delivery, request.received_at))
            keys.append((*key, delivery_id, request.received_at))
            created += 1
        plan.results[planned.request_index][planned.webhook_index] = IngestResult(planned.id, False, created)
    return rows, keys


def finished(plan: IngestPlan) -> list[list[IngestResult]]:
    out = []
    for results in plan.results:
        if any(result is None for result in results):  # cannot happen: every webhook is new or a duplicate
            raise AssertionError("an ingest result was not planned")
        out.append([result for result in results if result is not None])
    return out


# -- replay --------------------------------------------------------------------------------------------------

#: the state of a fact's key: None (no key), "purged" (key kept, row purged) or the delivery's status
KeyState = str | None


def remap_actions(
    deliveries: Sequence[NewDelivery], states: Mapping[Fact, KeyState], *, force: bool
) -> list[RemapAction]:
    """The replay rule, for the dry run and the write alike: per delivery (in order), "create" when its fact has
    no key, "reset" when `force` and the stored delivery is delivered or dead, else "skip (<why>)"; a fact that
    appears twice is skipped the second time."""
    actions: list[RemapAction] = []
    done: set[Fact] = set()
    for delivery in deliveries:
        key = fact(delivery)
        if key in done:
            actions.append("skip (repeated)")
            continue
        done.add(key)
        state = states.get(key)
        if state is None:
            actions.append("create")
        elif force and state in ("delivered", "dead"):
            actions.append("reset")
        else:
            actions.append(f"skip ({state})")
    return actions


def count_actions(actions: Sequence[str]) -> dict[str, int]:
    created = sum(1 for action in actions if action == "create")
    reset = sum(1 for action in actions if action == "reset")
    return {"created": created, "skipped": len(actions) - created - reset, "reset": reset}


def key_state(delivery_id: Any, status: Any) -> KeyState:
    """A looked-up key's state: the status of the delivery it names, or "purged" when that row is gone."""
    if delivery_id is None:
        return None
    return str(status) if status is not None else "purged"
