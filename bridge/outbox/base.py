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
  lanes       one row per destination: which dispatcher sends for it (owner, lease_until) and its limiter's
              pause after a 429 (paused_until, factor, throttled_at, cooldown), so both outlive a process; and
              whether it is disabled (disabled_at, disabled_reason, disabled_by: see Disabled).

Webhook status: accepted (mapped, deliveries created or deduplicated), ignored (no mapping for the type, or no
rule matched), mapping_failed (the mapping raised; `error` says why; replayable).

Delivery status:  pending ──claim──▶ in_flight ──complete──▶ delivered | pending (retry) | dead
                  in_flight with lease_until <= now is claimable again (the owner crashed or hung).
                  dead ──skip──▶ dead with skipped_at set: ops gave it up, it no longer holds its ordering key.

Disabled destinations: a destination that answered 410 Gone (or that ops disabled) holds its deliveries: no
claim takes them and `next_due_at` does not name them, on any replica, until `enable`; new deliveries for it are
stored as usual. Nothing goes dead while held (the schedule counts attempts, and a held delivery makes none).

Ordering: a delivery may carry an ordering key (destinations with `ordering: by_key`). Deliveries of one
destination sharing a key are *open* while pending, in flight, or dead and not skipped; only the first open one
in (ordering_at, ordering_seq, id) order is claimable, and none while another of the key is leased. Deliveries
without a key are claimed as before, so one blocked key never holds up the others.

Lanes: a destination's sending (its claims and its rate limiter) belongs to one dispatcher at a time, the holder
of the lane's lease (`hold_lanes`). A new holder seeds its limiter from `lane_history`: the requests recorded in
`attempts` (destination, started_at, latency) and the deliveries still leased by someone else, whose requests may
have gone out unrecorded. With one process per SQLite file every lane is always granted; with PostgreSQL the
replicas share them, so each destination's documented limits hold for the fleet.

All times are Unix seconds (float) passed in by the caller; the outbox never reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

WebhookStatus = Literal["accepted", "ignored", "mapping_failed"]
DeliveryStatus = Literal["pending", "in_flight", "delivered", "dead"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "in_flight", "delivered", "dead")
WEBHOOK_STATUSES: tuple[WebhookStatus, ...] = ("accepted", "ignored", "mapping_failed")


@dataclass(frozen=True, slots=True)
class Ordering:
    """Where a delivery stands among its destination's deliveries of the same key."""

    #: the entity whose events go one at a time (a subscription, contract or order), scoped by source
    key: str
    #: when the provider event occurred (Unix seconds)
    at: float
    #: the provider's sequence number for the event, where it has one (else 0)
    seq: int = 0


@dataclass(frozen=True, slots=True)
class NewDelivery:
    destination: str
    event_name: str
    event_id: str
    payload: bytes  # the canonical event, JSON
    #: None: delivered in any order (the destination does not order by key)
    ordering: Ordering | None = None


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
    #: the destination answered that it is gone (410): why, e.g. "410 Gone from https://host/path". `complete`
    #: disables the destination (by "destination") in the same transaction; the verdict is "retry", so the
    #: delivery is pending again, held until the destination is enabled
    disables: str | None = None


#: who disabled a destination: itself (a 410 answer) or ops (the API, the CLI or the page)
DisabledBy = Literal["destination", "ops"]


@dataclass(frozen=True, slots=True)
class Disabled:
    """A disabled destination: since when, why, and by whom."""

    at: float
    reason: str
    by: DisabledBy

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "reason": self.reason, "by": self.by}


@dataclass(frozen=True, slots=True)
class LaneState:
    """A lane's limiter state beyond its windows: a 429's pause and the reduced rate after it."""

    paused_until: float = 0.0
    #: fraction of the documented rate admitted (1.0: all of it)
    factor: float = 1.0
    throttled_at: float | None = None
    #: the current cool-down after 429s without Retry-After (seconds; 0: none)
    cooldown: float = 0.0


@dataclass(frozen=True, slots=True)
class LaneHistory:
    """What a lane's new holder needs to seed its rate limiter."""

    #: (started_at, answered_at) of each request recorded for the destination since the time asked for
    sends: list[tuple[float, float]]
    #: (lease, lease_until) of each delivery of the destination leased by another owner (or found in flight by
    #: the last open) whose lease no holder has noted yet: its request may have gone out and been answered without
    #: being recorded. `lease` names one lease of one delivery ("<delivery id>:<claim token>")
    unrecorded: list[tuple[str, float]]
    state: LaneState
    #: when each request an earlier holder counted as sent unrecorded was taken as answered (`note_unrecorded`),
    #: since the time asked for: such a request is gone from the deliveries' leases but not from the windows
    presumed: list[float] = field(default_factory=list)


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
        lease_owner=owner. A delivery with an ordering key is claimable only while it is the first open one of its
        key and no other of its key is leased (see the module docstring), so one claim takes at most one per key.
        A claim that comes back short parks the due deliveries it could not take because of their key: their
        next_attempt_at moves to when their key's first delivery is due (at most rows.PARK_SECONDS ahead; their
        own time is kept), so later claims do not walk past them again; delivering or skipping that first one
        makes them due at once."""
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
        """The earliest next_attempt_at of pending deliveries (or lease_until of in_flight ones), or None. A
        delivery blocked behind its key may come due before a claim can take it; the claim that cannot then
        parks it (see claim), so a blocked key costs a look every PARK_SECONDS at most, not a busy loop."""
        ...

    # -- lanes: who sends for a destination, and what its rate limiter must remember -------------------

    async def hold_lanes(self, destinations: Sequence[str], owner: str, now: float, ttl: float) -> list[str]:
        """Take or keep the lease on each destination's lane for `owner`, until now + ttl: granted where the lane
        is free, its lease ran out, or `owner` holds it already. Returns the destinations `owner` now holds."""
        ...

    async def release_lanes(self, destinations: Sequence[str], owner: str) -> None:
        """Give up `owner`'s leases on these lanes (at shutdown), so another dispatcher takes them at once."""
        ...

    async def beat(self, owner: str, now: float, ttl: float) -> int:
        """Dispatcher `owner` is alive until now + ttl (ttl 0: it is leaving). How many are alive, `owner`
        included: the lane balance (bridge/fleet.py). One process per store (SQLite): 1."""
        ...

    async def lane_history(self, destination: str, owner: str, since: float) -> LaneHistory:
        """The destination's requests recorded since `since`, its deliveries leased by owners other than `owner`
        (claim tokens are `owner` + ":" + a suffix), and its stored LaneState."""
        ...

    async def note_unrecorded(self, destination: str, sends: Sequence[tuple[str, float]], before: float) -> None:
        """Keep (lease, answered_at) of the requests a new lane holder counted as sent unrecorded, so every later
        holder counts them too, at the same time, even once the lease is gone (`lane_history`'s `presumed`);
        a lease already noted keeps its first time. Forget the destination's notes answered before `before`."""
        ...

    async def save_lane_state(self, destination: str, owner: str, state: LaneState) -> bool:
        """Store the lane's LaneState if `owner` holds the lane; whether it did."""
        ...

    async def watch(
        self,
        on_work: Callable[[Sequence[str] | None], None],
        on_lanes: Callable[[], None],
        on_holds: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        """Call `on_work(destinations)` when another process commits work for them (None: for any destination),
        `on_lanes()` when one releases lanes, and `on_holds(destinations)` when one disables or enables them
        (PostgreSQL: LISTEN/NOTIFY). Polling and lane renewals stay the fallback: nothing is lost if a call is
        missed. A no-op where one process owns the store (SQLite), which wakes its dispatcher itself."""
        ...

    # -- disabled destinations (see the module docstring) ------------------------------------------------

    async def disable(self, destination: str, disabled: Disabled) -> bool:
        """Disable `destination` (its deliveries are held). Whether it was enabled before (a destination disabled
        already keeps its first reason)."""
        ...

    async def enable(self, destination: str) -> Disabled | None:
        """Enable `destination` again: its held deliveries are claimable at once (and, PostgreSQL, the other
        replicas are woken). The state it had, or None if it was not disabled."""
        ...

    async def disabled(self) -> dict[str, Disabled]:
        """The disabled destinations."""
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

    async def skip(self, delivery_ids: Sequence[int], now: float) -> int:
        """Give up dead (or pending) deliveries: they become dead with skipped_at=now and stop holding their
        ordering key. In-flight and delivered ones are left alone. A later retry makes one pending (and
        ordered) again. Returns how many were skipped."""
        ...

    async def purge(self, before: float, statuses: Sequence[str] = ("delivered",)) -> PurgeResult:
        """Delete finished deliveries (and their attempts) last updated before `before`, then webhooks received
        before `before` with no deliveries left (mapping_failed ones are kept: a replay can still recover them),
        then requests with no webhooks left. Dedup keys stay (see purge_keys)."""
        ...

    async def purge_keys(self, before: float) -> int:
        """Delete dedup keys first seen before `before` whose webhook or delivery row is gone. Returns how many."""
        ...
