"""The outbox contract: durable webhooks and their deliveries.

Tables (names and columns are the same in every implementation):

  webhook_requests  one row per stored webhook request: source, received_at, headers (JSON bytes), body (the raw
              request bytes, stored once however many provider events the request holds).
  webhooks    one row per provider event received: request_id, source, provider, provider_event_id, event_type,
              received_at, status, error, events (JSON list of the canonical events the mapping produced).
  deliveries  one row per (canonical event, destination): webhook_id, destination, event_name, event_id,
              payload (canonical event JSON bytes), status, attempts, next_attempt_at, lease_until,
              lease_owner, created_at, updated_at, delivered_at, last_status_code, last_error.
  attempts    one row per delivery attempt: delivery_id, started_at, status_code, latency_ms, error,
              response_excerpt, verdict.
  webhook_keys, delivery_keys   the dedup keys, kept apart from the rows so a purge never forgets them
              (bridge/outbox/dedup.py states the rules): per source, provider event ids and body SHA-256s; per
              (source, destination, event name, event id), the one delivery of that fact.

Webhook status: accepted (mapped, deliveries created or deduplicated), ignored (no mapping for the type, or no
rule matched), mapping_failed (the mapping raised; `error` says why; replayable).

Delivery status:  pending ──claim──▶ in_flight ──complete──▶ delivered | pending (retry) | dead
                  in_flight with lease_until <= now is claimable again (the owner crashed or hung).

All times are Unix seconds (float) passed in by the caller; the outbox never reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

WebhookStatus = Literal["accepted", "ignored", "mapping_failed"]
DeliveryStatus = Literal["pending", "in_flight", "delivered", "dead"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "in_flight", "delivered", "dead")
WEBHOOK_STATUSES: tuple[WebhookStatus, ...] = ("accepted", "ignored", "mapping_failed")


@dataclass(frozen=True, slots=True)
class NewDelivery:
    destination: str
    event_name: str
    event_id: str
    payload: bytes  # the canonical event, JSON


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """One provider event of a request, mapped."""

    provider_event_id: str
    event_type: str
    status: WebhookStatus
    error: str | None
    events: bytes  # JSON list of canonical events
    deliveries: Sequence[NewDelivery]


@dataclass(frozen=True, slots=True)
class NewRequest:
    """One verified webhook request: the raw body and headers (stored once) and its provider events (one or more;
    a GoCardless or Adyen batch holds many)."""

    source: str
    provider: str
    received_at: float
    headers: bytes  # JSON object of the stored headers
    body: bytes  # the raw request body, exactly as received
    webhooks: Sequence[NewWebhook]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of one provider event of a request."""

    webhook_id: int
    #: its provider event id, or the whole body, was already stored for this source: nothing was written for it
    duplicate: bool
    #: deliveries actually inserted (those whose (source, destination, name, id) is known already are skipped)
    deliveries_created: int


#: what a replay does with one delivery: "create", "reset" or "skip (<why>)"
RemapAction = str


@dataclass(frozen=True, slots=True)
class RemapResult:
    """A replay's outcome (or, for a dry run, its plan): one action per delivery given, in order."""

    actions: list[RemapAction]
    created: int
    skipped: int
    reset: int

    def counts(self) -> dict[str, int]:
        return {"created": self.created, "skipped": self.skipped, "reset": self.reset}


@dataclass(frozen=True, slots=True)
class PurgeResult:
    deliveries: int
    webhooks: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """A claimed delivery."""

    id: int
    webhook_id: int
    destination: str
    event_name: str
    event_id: str
    payload: bytes
    attempts: int  # attempts completed before this claim
    lease_owner: str
    lease_until: float
    created_at: float


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """The result of one send, written by `complete` only if the lease is still held by `owner`."""

    delivery_id: int
    owner: str
    started_at: float
    verdict: Literal["delivered", "retry", "dead"]
    #: when to try again (verdict "retry"); ignored otherwise
    next_attempt_at: float | None
    status_code: int | None
    latency_ms: float | None
    error: str | None
    response_excerpt: str | None


class Outbox(Protocol):
    """Storage for webhooks and deliveries. Every write is durable when its coroutine returns."""

    async def open(self) -> None:
        """Connect, apply pending schema migrations, check durability settings. Raises OutboxError."""
        ...

    async def close(self) -> None:
        """Finish queued writes and disconnect."""
        ...

    async def ping(self) -> None:
        """Raise OutboxError unless the store answers a trivial query."""
        ...

    async def ingest(self, request: NewRequest) -> list[IngestResult]:
        """Store one webhook request (the body once), its provider events and their deliveries in one durable
        transaction (group-committed with concurrent callers), or nothing. One result per provider event, in order.
        A request whose body was stored before for its source is a duplicate as a whole; otherwise an event whose
        (source, provider_event_id) was stored before is a duplicate. A delivery whose (source, destination,
        event_name, event_id) was stored before is skipped. Keys outlive purged rows. Raises OutboxUnavailable
        (within the configured timeouts)."""
        ...

    async def claim(self, destination: str, limit: int, now: float, lease_seconds: float, owner: str) -> list[Delivery]:
        """Lease up to `limit` due deliveries of `destination`: pending with next_attempt_at <= now, or in_flight
        with lease_until <= now; oldest next_attempt_at first. Sets in_flight, lease_until=now+lease_seconds and
        lease_owner=owner."""
        ...

    async def complete(self, results: Sequence[AttemptResult]) -> list[bool]:
        """Record attempts and move each delivery to delivered / pending (retry at next_attempt_at) / dead, but only
        where it is still in_flight and leased by result.owner. Returns, per result, whether it was applied
        (False: the lease was lost and someone else owns the delivery; the attempt is still logged)."""
        ...

    async def release(self, delivery_ids: Sequence[int], owner: str) -> int:
        """Give leased deliveries back (in_flight -> pending, due now) without counting an attempt."""
        ...

    async def next_due_at(self, destination: str | None = None) -> float | None:
        """The earliest next_attempt_at of pending deliveries (or lease_until of in_flight ones), or None."""
        ...

    # -- ops -------------------------------------------------------------------------------------------

    async def stats(self, now: float) -> dict[str, Any]:
        """{"destinations": {name: {"pending", "in_flight", "delivered", "dead": int, "oldest_pending_age_seconds":
        float|None, "last_success_at": float|None, "last_failure_at": float|None}}, "webhooks": {status: int}}"""
        ...

    async def list_deliveries(
        self,
        *,
        status: str | None = None,
        destination: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Deliveries newest first (id descending) after `cursor` (an id), without payloads; and the next cursor."""
        ...

    async def get_delivery(self, delivery_id: int) -> dict[str, Any] | None:
        """One delivery with its payload (decoded JSON under "event") and its attempts (oldest first)."""
        ...

    async def retry(
        self,
        now: float,
        *,
        ids: Sequence[int] | None = None,
        status: str | None = "dead",
        destination: str | None = None,
    ) -> int:
        """Make deliveries due now (pending, next_attempt_at=now), selected by ids or by status/destination.
        In-flight and delivered deliveries are never touched unless named by status explicitly (delivered)."""
        ...

    async def get_webhook(self, webhook_id: int) -> dict[str, Any] | None:
        """One webhook with its raw body (bytes), headers and events (decoded), and its deliveries' summaries."""
        ...

    async def list_webhooks(
        self,
        *,
        source: str | None = None,
        event_type: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Webhooks newest first (id descending) after `cursor`, without bodies; received_at in [since, until)."""
        ...

    async def update_webhook_mapping(
        self,
        webhook_id: int,
        status: str,
        error: str | None,
        events: bytes,
        deliveries: Sequence[NewDelivery],
        *,
        now: float,
        force: bool = False,
        dry_run: bool = False,
    ) -> RemapResult:
        """Replay: set the webhook's status/error/events and add `deliveries` (due at `now`) by the ingest rule:
        a delivery whose (source, destination, event_name, event_id) is known is skipped, and with `force` a
        stored delivered or dead one is reset to pending (dedup.remap_actions). One transaction. `dry_run` decides
        the same way and writes nothing. OutboxError if there is no such webhook."""
        ...

    async def purge(self, before: float, statuses: Sequence[str] = ("delivered",)) -> PurgeResult:
        """Delete finished deliveries (and their attempts) last updated before `before`, then webhooks received
        before `before` with no deliveries left (mapping_failed ones are kept: a replay can still recover them),
        then requests with no webhooks left. Dedup keys stay (see purge_keys)."""
        ...

    async def purge_keys(self, before: float) -> int:
        """Delete dedup keys first seen before `before` whose webhook or delivery row is gone. Returns how many."""
        ...
