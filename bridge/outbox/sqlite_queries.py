"""SQL for the SQLite outbox. Multi-row statements are built per row count (and cached), so one batch of N
operations costs a handful of statements, not N."""

from __future__ import annotations

from functools import lru_cache

from bridge.outbox.rows import ATTEMPT_COLUMNS, CLAIM_COLUMNS, DELIVERY_COLUMNS, WEBHOOK_SUMMARY_COLUMNS

DELIVERY_SELECT = ", ".join(DELIVERY_COLUMNS)
ATTEMPT_SELECT = ", ".join(ATTEMPT_COLUMNS)
WEBHOOK_SUMMARY_SELECT = ", ".join(WEBHOOK_SUMMARY_COLUMNS)

# columns per row of the multi-row statements (chunk sizes are derived from SQLite's variable limit)
WEBHOOK_PARAMS = 10
DELIVERY_PARAMS = 8
COMPLETE_PARAMS = 7
ATTEMPT_PARAMS = 9
ACTIVITY_PARAMS = 3
KEY_PARAMS = 2
RESET_PARAMS = 4


@lru_cache(maxsize=512)
def values(rows: int, columns: int, template: str | None = None) -> str:
    """`(?, ?), (?, ?)` for rows x columns, or `template` repeated."""
    row = template or "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


def marks(count: int) -> str:
    return ", ".join("?" * count)


def insert_webhooks(rows: int) -> str:
    return (
        "INSERT INTO webhooks (source, provider, provider_event_id, event_type, received_at, status, error, "
        f"headers, body, events) VALUES {values(rows, WEBHOOK_PARAMS)} "
        "ON CONFLICT (source, provider_event_id) DO NOTHING RETURNING id, source, provider_event_id"
    )


def find_webhooks(rows: int) -> str:
    return (
        f"WITH k (source, provider_event_id) AS (VALUES {values(rows, KEY_PARAMS)}) "
        "SELECT w.id, w.source, w.provider_event_id FROM k "
        "JOIN webhooks AS w ON w.source = k.source AND w.provider_event_id = k.provider_event_id"
    )


def insert_deliveries(rows: int) -> str:
    """Params per row: webhook_id, destination, event_name, event_id, payload, next_attempt_at, created_at,
    updated_at."""
    row = "(?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)"
    return (
        "INSERT INTO deliveries (webhook_id, destination, event_name, event_id, payload, status, attempts, "
        f"next_attempt_at, created_at, updated_at) VALUES {values(rows, DELIVERY_PARAMS, row)} "
        "ON CONFLICT (destination, event_name, event_id) DO NOTHING "
        "RETURNING webhook_id, destination, event_name, event_id"
    )


# The claim: the oldest due pending rows (index deliveries_due, already in order) and the oldest rows whose lease
# expired (index deliveries_lease, few rows), merged and cut to :limit. `UPDATE ... WHERE id IN (SELECT ... LIMIT)`
# is the portable form; this SQLite build puts RETURNING before ORDER BY/LIMIT in the other one.
CLAIM = f"""
UPDATE deliveries
SET status = 'in_flight', lease_owner = :owner, lease_until = :lease_until, updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT * FROM (
            SELECT id, next_attempt_at FROM deliveries
            WHERE destination = :destination AND status = 'pending' AND next_attempt_at <= :now
            ORDER BY next_attempt_at, id LIMIT :limit)
        UNION ALL
        SELECT * FROM (
            SELECT id, next_attempt_at FROM deliveries
            WHERE destination = :destination AND status = 'in_flight' AND lease_until <= :now
            ORDER BY next_attempt_at, id LIMIT :limit)
        ORDER BY next_attempt_at, id LIMIT :limit))
RETURNING {", ".join(CLAIM_COLUMNS)}
"""


def complete(rows: int) -> str:
    """Params per row: id, owner, verdict, next_attempt_at, status_code, error, finished_at. Returns applied ids."""
    return f"""
WITH r (id, owner, verdict, next_at, code, err, finished) AS (VALUES {values(rows, COMPLETE_PARAMS)})
UPDATE deliveries SET
    status = CASE r.verdict WHEN 'delivered' THEN 'delivered' WHEN 'retry' THEN 'pending' ELSE 'dead' END,
    attempts = deliveries.attempts + 1,
    next_attempt_at = CASE WHEN r.verdict = 'retry' THEN r.next_at ELSE deliveries.next_attempt_at END,
    lease_owner = NULL,
    lease_until = NULL,
    updated_at = r.finished,
    delivered_at = CASE WHEN r.verdict = 'delivered' THEN r.finished ELSE deliveries.delivered_at END,
    last_status_code = r.code,
    last_error = r.err
FROM r
WHERE deliveries.id = r.id AND deliveries.status = 'in_flight' AND deliveries.lease_owner = r.owner
RETURNING deliveries.id
"""


def insert_attempts(rows: int) -> str:
    """Params per row: delivery_id, started_at, status_code, latency_ms, error, response_excerpt, verdict,
    lease_owner, applied. Attempts of deliveries that no longer exist (purged) are dropped."""
    return (
        "INSERT INTO attempts (delivery_id, started_at, status_code, latency_ms, error, response_excerpt, verdict, "
        "lease_owner, applied) SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, "
        f"v.column8, v.column9 FROM (VALUES {values(rows, ATTEMPT_PARAMS)}) AS v "
        "WHERE EXISTS (SELECT 1 FROM deliveries AS d WHERE d.id = v.column1)"
    )


def record_activity(rows: int) -> str:
    """Params per row: delivery_id, verdict, finished_at."""
    return (
        "INSERT INTO destination_activity (destination, last_success_at, last_failure_at) "
        "SELECT d.destination, max(CASE WHEN v.column2 = 'delivered' THEN v.column3 END), "
        "max(CASE WHEN v.column2 <> 'delivered' THEN v.column3 END) "
        f"FROM (VALUES {values(rows, ACTIVITY_PARAMS)}) AS v JOIN deliveries AS d ON d.id = v.column1 "
        "GROUP BY d.destination "
        "ON CONFLICT (destination) DO UPDATE SET "
        "last_success_at = max(coalesce(last_success_at, excluded.last_success_at), "
        "coalesce(excluded.last_success_at, last_success_at)), "
        "last_failure_at = max(coalesce(last_failure_at, excluded.last_failure_at), "
        "coalesce(excluded.last_failure_at, last_failure_at))"
    )


def release(ids: int) -> str:
    return (
        "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL "
        f"WHERE id IN ({marks(ids)}) AND status = 'in_flight' AND lease_owner = ? RETURNING id"
    )


_RETRY_SET = (
    "UPDATE deliveries SET status = 'pending', next_attempt_at = :now, lease_owner = NULL, lease_until = NULL, "
    "delivered_at = NULL, updated_at = :now WHERE "
)
# a pending delivery that is already due keeps its place in the queue
_NOT_DUE = "NOT (status = 'pending' AND next_attempt_at <= :now)"


def retry_ids(ids: int, statuses: int) -> str:
    id_marks = ", ".join(f":id{i}" for i in range(ids))
    status_marks = ", ".join(f":status{i}" for i in range(statuses))
    return f"{_RETRY_SET} id IN ({id_marks}) AND status IN ({status_marks}) AND {_NOT_DUE} RETURNING id"


def retry_filter(statuses: int, by_destination: bool) -> str:
    status_marks = ", ".join(f":status{i}" for i in range(statuses))
    destination = " AND destination = :destination" if by_destination else ""
    return (
        f"{_RETRY_SET} id IN (SELECT id FROM deliveries WHERE status IN ({status_marks}){destination} "
        f"AND {_NOT_DUE} ORDER BY id LIMIT :limit) RETURNING id"
    )


def _purgeable(statuses: int) -> str:
    """Params: after_id, statuses..., before, limit. The id cursor makes a whole purge one pass over the table."""
    return (
        f"SELECT id FROM deliveries WHERE id > ? AND status IN ({marks(statuses)}) AND updated_at < ? "
        "ORDER BY id LIMIT ?"
    )


def purge_attempts(statuses: int) -> str:
    return f"DELETE FROM attempts WHERE delivery_id IN ({_purgeable(statuses)})"


def purge_deliveries(statuses: int) -> str:
    return f"DELETE FROM deliveries WHERE id IN ({_purgeable(statuses)}) RETURNING id"


# no ORDER BY: the received_at index drives it
PURGE_WEBHOOKS = """
DELETE FROM webhooks WHERE id IN (
    SELECT w.id FROM webhooks AS w
    WHERE w.received_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.webhook_id = w.id)
    LIMIT ?)
RETURNING id
"""

REMAP_WEBHOOK = "UPDATE webhooks SET status = ?, error = ?, events = ? WHERE id = ? RETURNING id"


def reset_deliveries(rows: int) -> str:
    """Params: per row destination, event_name, event_id, payload; then now, now."""
    return f"""
WITH v (destination, event_name, event_id, payload) AS (VALUES {values(rows, RESET_PARAMS)})
UPDATE deliveries SET status = 'pending', next_attempt_at = ?, lease_owner = NULL, lease_until = NULL,
    delivered_at = NULL, updated_at = ?, payload = v.payload
FROM v
WHERE deliveries.destination = v.destination AND deliveries.event_name = v.event_name
    AND deliveries.event_id = v.event_id AND deliveries.status IN ('delivered', 'dead')
RETURNING deliveries.id
"""


RESET_IN_FLIGHT = (
    "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL WHERE status = 'in_flight' "
    "RETURNING id"
)

# -- reads -----------------------------------------------------------------------------------------------

# distinct destinations as a loose index scan: O(destinations x log n) instead of a scan of every row
_DESTINATIONS = """
WITH RECURSIVE dest (name) AS (
    SELECT (SELECT min(destination) FROM deliveries)
    UNION ALL
    SELECT (SELECT min(destination) FROM deliveries WHERE destination > dest.name) FROM dest
    WHERE dest.name IS NOT NULL)
"""

NEXT_DUE_ONE = """
SELECT min(t) FROM (
    SELECT min(next_attempt_at) AS t FROM deliveries WHERE destination = :destination AND status = 'pending'
    UNION ALL
    SELECT min(lease_until) FROM deliveries WHERE destination = :destination AND status = 'in_flight')
"""

NEXT_DUE_ALL = f"""
{_DESTINATIONS}
SELECT min(t) FROM (
    SELECT (SELECT min(next_attempt_at) FROM deliveries WHERE destination = dest.name AND status = 'pending') AS t
    FROM dest WHERE dest.name IS NOT NULL
    UNION ALL
    SELECT min(lease_until) FROM deliveries WHERE status = 'in_flight')
"""

STATS_COUNTS = "SELECT destination, status, count(*) FROM deliveries GROUP BY destination, status"
STATS_OLDEST = f"""
{_DESTINATIONS}
SELECT dest.name, (SELECT min(created_at) FROM deliveries WHERE destination = dest.name AND status = 'pending')
FROM dest WHERE dest.name IS NOT NULL
"""
STATS_ACTIVITY = "SELECT destination, last_success_at, last_failure_at FROM destination_activity"
STATS_WEBHOOKS = "SELECT status, count(*) FROM webhooks GROUP BY status"

GET_DELIVERY = f"SELECT {DELIVERY_SELECT}, payload FROM deliveries WHERE id = ?"
GET_ATTEMPTS = f"SELECT {ATTEMPT_SELECT} FROM attempts WHERE delivery_id = ? ORDER BY started_at, id"
GET_WEBHOOK = f"SELECT {WEBHOOK_SUMMARY_SELECT}, headers, body, events FROM webhooks WHERE id = ?"
WEBHOOK_DELIVERIES = f"SELECT {DELIVERY_SELECT} FROM deliveries WHERE webhook_id = ? ORDER BY id"
