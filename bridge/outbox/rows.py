"""Helpers shared by the outbox implementations: argument checks and turning rows into plain dicts.

Nothing here does I/O. Row tuples come in the column order of the *_COLUMNS constants below, which both
implementations select in that order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from operator import itemgetter
from typing import Any

import orjson

from bridge.outbox.base import (
    DELIVERY_STATUSES,
    WEBHOOK_STATUSES,
    AttemptResult,
    Delivery,
    LaneHistory,
    LaneState,
    NewDelivery,
    NewRequest,
)

VERDICTS = ("delivered", "retry", "dead")
#: statuses that `purge` may delete
FINISHED_STATUSES = ("delivered", "dead")

DELIVERY_COLUMNS = (
    "id",
    "webhook_id",
    "destination",
    "event_name",
    "event_id",
    "status",
    "attempts",
    "next_attempt_at",
    "lease_until",
    "lease_owner",
    "created_at",
    "updated_at",
    "delivered_at",
    "last_status_code",
    "last_error",
    "ordering_key",
    "skipped_at",
)
ATTEMPT_COLUMNS = (
    "id",
    "delivery_id",
    "started_at",
    "status_code",
    "latency_ms",
    "error",
    "response_excerpt",
    "verdict",
    "lease_owner",
    "applied",
)
WEBHOOK_SUMMARY_COLUMNS = (
    "id",
    "source",
    "provider",
    "provider_event_id",
    "event_type",
    "received_at",
    "status",
    "error",
)
#: claim() returns these columns, in this order
CLAIM_COLUMNS = (
    "id",
    "webhook_id",
    "destination",
    "event_name",
    "event_id",
    "payload",
    "attempts",
    "lease_owner",
    "lease_until",
    "created_at",
    "next_attempt_at",
)

#: skip touches deliveries in these statuses (in flight: its owner is sending it; delivered: nothing to give up)
SKIPPABLE_STATUSES = ("pending", "dead")

#: a delivery blocked behind an earlier one of its key is parked at most this long before it is looked at again
PARK_SECONDS = 300.0
#: rows parked by one claim at most (the rest on the next)
PARK_SCAN = 5000
#: "never" for a blocker that is dead (parking still ends after PARK_SECONDS)
FAR = 1e18

#: bulk retry and purge touch at most this many rows per transaction, so they never stall ingest for long
BULK_CHUNK = 2000


def clean_text(value: str | None, *, strip_nul: bool = False) -> str | None:
    """Make a string storable: lone surrogates become U+FFFD (and NUL too where the store refuses it)."""
    if value is None:
        return None
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode("utf-8")
    if strip_nul and "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value


def _text(value: str, strip_nul: bool) -> str:
    return clean_text(value, strip_nul=strip_nul) or ""


def clean_delivery(delivery: NewDelivery, *, strip_nul: bool = False) -> NewDelivery:
    """The delivery with storable key text (its keys are compared as stored)."""
    return replace(
        delivery,
        destination=_text(delivery.destination, strip_nul),
        event_name=_text(delivery.event_name, strip_nul),
        event_id=_text(delivery.event_id, strip_nul),
    )


def _storable(value: str | None, strip_nul: bool) -> bool:
    return value is None or clean_text(value, strip_nul=strip_nul) is value


def clean_request(request: NewRequest, *, strip_nul: bool = False) -> NewRequest:
    """The request with every text field storable (see clean_text), so keys are planned on the stored values.
    The request itself when nothing needs cleaning (the usual case: no copying on the hot path)."""
    texts: list[str | None] = [request.source, request.provider]
    for webhook in request.webhooks:
        texts += (webhook.provider_event_id, webhook.event_type, webhook.error)
        for d in webhook.deliveries:
            texts += (d.destination, d.event_name, d.event_id)
    if all(_storable(text, strip_nul) for text in texts):
        return request
    webhooks = [
        replace(
            webhook,
            provider_event_id=_text(webhook.provider_event_id, strip_nul),
            event_type=_text(webhook.event_type, strip_nul),
            error=clean_text(webhook.error, strip_nul=strip_nul),
            deliveries=[clean_delivery(d, strip_nul=strip_nul) for d in webhook.deliveries],
        )
        for webhook in request.webhooks
    ]
    return replace(
        request,
        source=_text(request.source, strip_nul),
        provider=_text(request.provider, strip_nul),
        webhooks=webhooks,
    )


def check_request(request: NewRequest) -> None:
    if not request.webhooks:
        raise ValueError("a request to store holds at least one provider event")
    for webhook in request.webhooks:
        if webhook.status not in WEBHOOK_STATUSES:
            raise ValueError(f"webhook status must be one of {WEBHOOK_STATUSES}, not {webhook.status!r}")


def check_results(results: Sequence[AttemptResult]) -> None:
    for result in results:
        if result.verdict not in VERDICTS:
            raise ValueError(f"attempt verdict must be one of {VERDICTS}, not {result.verdict!r}")


def check_delivery_status(status: str | None) -> None:
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValueError(f"delivery status must be one of {DELIVERY_STATUSES}, not {status!r}")


def check_webhook_status(status: str | None) -> None:
    if status is not None and status not in WEBHOOK_STATUSES:
        raise ValueError(f"webhook status must be one of {WEBHOOK_STATUSES}, not {status!r}")


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")


def retry_statuses(ids: Sequence[int] | None, status: str | None) -> tuple[str, ...]:
    """Which delivery statuses `retry` may touch.

    By filter: exactly `status` (None means pending and dead). By ids: pending and dead ones, plus delivered ones when
    `status` is "delivered". In-flight deliveries are never retried: their lease owner is still working on them.
    """
    check_delivery_status(status)
    if status == "in_flight":
        raise ValueError("in-flight deliveries cannot be retried; release them or wait for their lease to expire")
    if ids is not None:
        return ("pending", "dead", "delivered") if status == "delivered" else ("pending", "dead")
    if status is None:
        return ("pending", "dead")
    return (status,)


def check_purge_statuses(statuses: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(statuses))
    for status in chosen:
        if status not in FINISHED_STATUSES:
            raise ValueError(f"purge only deletes finished deliveries {FINISHED_STATUSES}, not {status!r}")
    return chosen


def finished_at(result: AttemptResult) -> float:
    """When an attempt ended: started_at plus its latency (the outbox never reads a clock)."""
    return result.started_at + (result.latency_ms or 0.0) / 1000.0


def retry_at(result: AttemptResult) -> float:
    """The next_attempt_at a "retry" verdict sets (due at once when the caller gave no time)."""
    return result.next_attempt_at if result.next_attempt_at is not None else finished_at(result)


def unique_rounds(results: Sequence[AttemptResult]) -> list[list[int]]:
    """Split result indexes into rounds in which each delivery id appears once, keeping their order.

    A second result for the same delivery is applied after the first (and finds the lease gone)."""
    rounds: list[list[int]] = []
    seen: list[set[int]] = []
    for index, result in enumerate(results):
        for number, ids in enumerate(seen):
            if result.delivery_id not in ids:
                ids.add(result.delivery_id)
                rounds[number].append(index)
                break
        else:
            seen.append({result.delivery_id})
            rounds.append([index])
    return rounds


def decode_json(raw: bytes | None) -> Any:
    """Stored JSON bytes as Python values (undecodable bytes come back as text, never raise)."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return bytes(raw).decode("utf-8", "replace")


def as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def delivery_from_claim(row: Sequence[Any]) -> tuple[float, Delivery]:
    """(next_attempt_at, Delivery) from a row in CLAIM_COLUMNS order."""
    return float(row[10]), Delivery(
        id=int(row[0]),
        webhook_id=int(row[1]),
        destination=row[2],
        event_name=row[3],
        event_id=row[4],
        payload=bytes(row[5]),
        attempts=int(row[6]),
        lease_owner=row[7],
        lease_until=float(row[8]),
        created_at=float(row[9]),
    )


def sort_claimed(rows: Iterable[Sequence[Any]]) -> list[Delivery]:
    """Claimed rows as Deliveries, oldest next_attempt_at first (ties by id)."""
    keyed = [delivery_from_claim(row) for row in rows]
    keyed.sort(key=lambda item: (item[0], item[1].id))
    return [delivery for _, delivery in keyed]


_DELIVERY_FLOATS = frozenset(
    {"next_attempt_at", "lease_until", "created_at", "updated_at", "delivered_at", "skipped_at"}
)


def delivery_dict(row: Sequence[Any]) -> dict[str, Any]:
    """A row in DELIVERY_COLUMNS order as a JSON-friendly dict (no payload)."""
    out: dict[str, Any] = {}
    for name, value in zip(DELIVERY_COLUMNS, row, strict=True):
        out[name] = as_float(value) if name in _DELIVERY_FLOATS else value
    return out


def attempt_dict(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(ATTEMPT_COLUMNS, row, strict=True))
    out["started_at"] = float(out["started_at"])
    out["latency_ms"] = as_float(out["latency_ms"])
    out["applied"] = bool(out["applied"])
    return out


def webhook_summary(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(WEBHOOK_SUMMARY_COLUMNS, row, strict=True))
    out["received_at"] = float(out["received_at"])
    return out


def full_delivery(row: Sequence[Any], payload: bytes, attempts: Iterable[Sequence[Any]]) -> dict[str, Any]:
    """get_delivery's answer: the summary, "event" (decoded payload), "attempts" (list, oldest first) and
    "attempt_count" (the counter that list_deliveries calls "attempts")."""
    out = delivery_dict(row)
    out["attempt_count"] = out.pop("attempts")
    out["event"] = decode_json(payload)
    out["attempts"] = [attempt_dict(attempt) for attempt in attempts]
    return out


def full_webhook(
    row: Sequence[Any], headers: bytes, body: bytes, events: bytes, deliveries: Iterable[Sequence[Any]]
) -> dict[str, Any]:
    out = webhook_summary(row)
    out["headers"] = decode_json(headers)
    out["body"] = bytes(body)
    out["events"] = decode_json(events)
    out["deliveries"] = [delivery_dict(delivery) for delivery in deliveries]
    return out


def where(conditions: Sequence[tuple[str, str, Any]], *, numbered: bool) -> tuple[str, list[Any]]:
    """A WHERE clause (without the keyword) over the conditions whose value is not None, with `?` or `$n`
    placeholders, and its parameters."""
    clauses: list[str] = ["1 = 1"]
    params: list[Any] = []
    for column, op, value in conditions:
        if value is not None:
            params.append(value)
            clauses.append(f"{column} {op} {'$' + str(len(params)) if numbered else '?'}")
    return " AND ".join(clauses), params


def page(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], int | None]:
    """Rows fetched with limit + 1: the first `limit` and the cursor for the next page (None on the last page)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, int(rows[-1]["id"])
    return rows, None


def empty_destination_stats() -> dict[str, Any]:
    stats: dict[str, Any] = {status: 0 for status in DELIVERY_STATUSES}
    stats.update(oldest_pending_age_seconds=None, last_success_at=None, last_failure_at=None)
    return stats


def build_stats(
    now: float,
    counts: Iterable[Sequence[Any]],
    oldest_pending: Iterable[Sequence[Any]],
    activity: Iterable[Sequence[Any]],
    webhook_counts: Iterable[Sequence[Any]],
) -> dict[str, Any]:
    """stats() from (destination, status, n), (destination, min created_at of pending), (destination,
    last_success_at, last_failure_at) and (webhook status, n) rows."""
    destinations: dict[str, dict[str, Any]] = {}
    for destination, status, n in counts:
        destinations.setdefault(destination, empty_destination_stats())[status] = int(n)
    for destination, oldest in oldest_pending:
        if oldest is not None:
            age = max(0.0, now - float(oldest))
            destinations.setdefault(destination, empty_destination_stats())["oldest_pending_age_seconds"] = age
    for destination, success, failure in activity:
        entry = destinations.setdefault(destination, empty_destination_stats())
        entry["last_success_at"] = as_float(success)
        entry["last_failure_at"] = as_float(failure)
    webhooks: dict[str, int] = {status: 0 for status in WEBHOOK_STATUSES}
    for status, n in webhook_counts:
        webhooks[status] = int(n)
    return {"destinations": dict(sorted(destinations.items())), "webhooks": webhooks}


def ordering_values(delivery: NewDelivery) -> tuple[str | None, float | None, int | None]:
    """(ordering_key, ordering_at, ordering_seq) as stored for a new delivery."""
    ordering = delivery.ordering
    if ordering is None:
        return None, None, None
    return clean_text(ordering.key, strip_nul=True), float(ordering.at), int(ordering.seq)


def lane_state(row: Sequence[Any] | None) -> LaneState:
    """A LaneState from (paused_until, factor, throttled_at, cooldown), or the default when there is no row."""
    if row is None:
        return LaneState()
    return LaneState(
        paused_until=float(row[0]), factor=float(row[1]), throttled_at=as_float(row[2]), cooldown=float(row[3])
    )


def lane_history(
    sends: Iterable[Sequence[Any]],
    leased: Iterable[Sequence[Any]],
    state: LaneState,
    noted: Iterable[Sequence[Any]],
    since: float,
) -> LaneHistory:
    """LaneHistory from (started_at, latency_ms, ...) request rows, (lease, lease_until) rows of foreign leases and
    (lease, answered_at) rows of the destination's noted unrecorded requests: a lease noted already is presumed
    (at its noted time, if since `since`), not counted again."""
    presumed = {str(row[0]): float(row[1]) for row in noted}
    return LaneHistory(
        sends=sorted((float(row[0]), float(row[0]) + float(row[1]) / 1000.0) for row in sends),
        unrecorded=sorted(
            ((str(row[0]), float(row[1])) for row in leased if str(row[0]) not in presumed), key=itemgetter(1)
        ),
        state=state,
        presumed=sorted(at for at in presumed.values() if at >= since),
    )
