"""What the status page shows, gathered through the outbox contract, the dispatcher's report and the metrics.

No SQL here: filters the outbox does not offer (event name, time) are applied while paging through
`list_deliveries`, with a bound on how many rows one page view reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.ops.destinations import add_disabled
from bridge.ops.lanes import lane_health
from bridge.ops.params import SECONDS_MAX, number
from bridge.outbox.base import DELIVERY_STATUSES
from bridge.state import BridgeState

#: rows one list view examines at most, whatever its filters (a filter matching nothing stays cheap)
SCAN_LIMIT = 2000
#: rows fetched per outbox call while scanning
SCAN_PAGE = 200


def outbox(state: BridgeState) -> Any:
    if state.outbox is None:
        raise RuntimeError("the outbox is not open yet")
    return state.outbox


async def destination_stats(state: BridgeState) -> dict[str, Any]:
    """outbox.stats() with every configured destination present (zeros included)."""
    stats: dict[str, Any] = await outbox(state).stats(state.clock.now())
    per = stats.setdefault("destinations", {})
    for name in state.destinations:
        zero: dict[str, Any] = {status: 0 for status in DELIVERY_STATUSES}
        zero.update(oldest_pending_age_seconds=None, last_success_at=None, last_failure_at=None)
        per.setdefault(name, zero)
    await add_disabled(state, per)
    return stats


async def last_failure(state: BridgeState, destination: str) -> dict[str, Any] | None:
    """The most recent failed attempt of `destination` among its newest pending and dead deliveries: the
    delivery id, when, status code, error and the response excerpt."""
    candidates: list[dict[str, Any]] = []
    for status in ("pending", "dead"):
        rows, _ = await outbox(state).list_deliveries(status=status, destination=destination, limit=25)
        candidates += [row for row in rows if row.get("last_error")]
    if not candidates:
        return None
    latest = max(candidates, key=lambda row: row.get("updated_at") or 0.0)
    full = await outbox(state).get_delivery(latest["id"])
    failed = [a for a in (full or {}).get("attempts", []) if a.get("verdict") != "delivered"]
    attempt = failed[-1] if failed else {}
    return {
        "delivery_id": latest["id"],
        "at": attempt.get("started_at", latest.get("updated_at")),
        "status_code": attempt.get("status_code", latest.get("last_status_code")),
        "error": attempt.get("error") or latest.get("last_error"),
        "excerpt": attempt.get("response_excerpt"),
    }


async def overview(state: BridgeState) -> dict[str, Any]:
    now = state.clock.now()
    stats = await destination_stats(state)
    health = lane_health(state)
    rows = []
    for name, counts in sorted(stats["destinations"].items()):
        destination = state.destinations.get(name)
        lane = health.get(name)
        paused_until = lane.paused_until if lane is not None else None
        rows.append(
            {
                "name": name,
                "type": destination.type if destination is not None else "(no longer configured)",
                **counts,
                "paused_until": paused_until if paused_until is not None and paused_until > now else None,
                "stalled": lane is not None and lane.stalled,
                # None, or {at, reason, by}: its deliveries are held until it is enabled
                "disabled": counts.get("disabled"),
                # another replica holds the lane (PostgreSQL): its own page shows the lane's state
                "elsewhere": lane is not None and not lane.held,
                "failure": await last_failure(state, name) if counts.get("last_failure_at") else None,
            }
        )
    return {
        "now": now,
        "destinations": rows,
        "stored_webhooks": stats.get("webhooks", {}),
        "seen": state.metrics.webhook_counts(),
        "dispatching": state.dispatcher is not None,
    }


def parse_time(value: str | None, name: str) -> float | None:
    """Unix seconds from a form field: empty, Unix seconds, or an ISO date/time (UTC unless it says)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        float(text)
    except ValueError:
        pass
    else:
        return number(text, name, minimum=0, maximum=SECONDS_MAX)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: give a date and time like 2025-01-31T14:00 (UTC) or Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class DeliveryFilter:
    destination: str | None = None
    status: str | None = None
    event: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, row: dict[str, Any]) -> bool:
        if self.event is not None and row["event_name"] != self.event:
            return False
        created = row.get("created_at") or 0.0
        if self.since is not None and created < self.since:
            return False
        return not (self.until is not None and created >= self.until)


async def find_deliveries(
    state: BridgeState, chosen: DeliveryFilter, *, cursor: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None, int]:
    """Up to `limit` deliveries matching `chosen`, newest first, each with its attempts; the cursor to go on
    from (None: nothing older); and how many rows were examined."""
    found: list[dict[str, Any]] = []
    examined = 0
    next_cursor = cursor
    while len(found) < limit and examined < SCAN_LIMIT:
        rows, page_cursor = await outbox(state).list_deliveries(
            status=chosen.status, destination=chosen.destination, limit=SCAN_PAGE, cursor=next_cursor
        )
        next_cursor = page_cursor
        for row in rows:
            examined += 1
            if chosen.matches(row):
                found.append(row)
            if len(found) >= limit or examined >= SCAN_LIMIT:
                # stopped inside this page: go on after the last row looked at (if any row is left)
                next_cursor = int(row["id"]) if row is not rows[-1] or page_cursor is not None else None
                break
        if next_cursor is None:
            break
    detailed = []
    for row in found:
        full = await outbox(state).get_delivery(int(row["id"]))
        detailed.append({**row, "attempt_log": (full or {}).get("attempts", [])})
    return detailed, next_cursor, examined
