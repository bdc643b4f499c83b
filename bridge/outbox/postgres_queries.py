"""SQL for the PostgreSQL outbox. Multi-row writes pass arrays and `unnest` them: one round trip per statement."""

from __future__ import annotations

from bridge.outbox.rows import ATTEMPT_COLUMNS, CLAIM_COLUMNS, DELIVERY_COLUMNS, WEBHOOK_SUMMARY_COLUMNS

DELIVERY_SELECT = ", ".join(DELIVERY_COLUMNS)
ATTEMPT_SELECT = ", ".join(ATTEMPT_COLUMNS)
WEBHOOK_SUMMARY_SELECT = ", ".join(WEBHOOK_SUMMARY_COLUMNS)

INSERT_WEBHOOK = """
INSERT INTO webhooks (source, provider, provider_event_id, event_type, received_at, status, error, headers, body,
    events)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (source, provider_event_id) DO NOTHING
RETURNING id
"""
FIND_WEBHOOK = "SELECT id FROM webhooks WHERE source = $1 AND provider_event_id = $2"

# $1 webhook id, $2..$5 arrays (destination, event_name, event_id, payload), $6 time. Rows go in key order so
# concurrent transactions inserting overlapping keys wait on each other instead of deadlocking.
INSERT_DELIVERIES = """
INSERT INTO deliveries (webhook_id, destination, event_name, event_id, payload, status, attempts, next_attempt_at,
    created_at, updated_at)
SELECT $1, u.destination, u.event_name, u.event_id, u.payload, 'pending', 0, $6, $6, $6
FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[]) AS u (destination, event_name, event_id, payload)
ORDER BY u.destination, u.event_name, u.event_id
ON CONFLICT (destination, event_name, event_id) DO NOTHING
RETURNING destination, event_name, event_id
"""

# $1 destination, $2 now, $3 limit, $4 owner, $5 lease_until. SKIP LOCKED: concurrent claimers take disjoint rows.
CLAIM = f"""
WITH pending AS (
    SELECT id, next_attempt_at FROM deliveries
    WHERE destination = $1 AND status = 'pending' AND next_attempt_at <= $2
    ORDER BY next_attempt_at, id LIMIT $3
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, next_attempt_at FROM deliveries
    WHERE destination = $1 AND status = 'in_flight' AND lease_until <= $2
    ORDER BY next_attempt_at, id LIMIT $3
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) AS due
    ORDER BY next_attempt_at, id LIMIT $3
)
UPDATE deliveries AS d SET status = 'in_flight', lease_owner = $4, lease_until = $5, updated_at = $2
FROM chosen WHERE d.id = chosen.id
RETURNING {", ".join("d." + column for column in CLAIM_COLUMNS)}
"""

# arrays: id, owner, verdict, next_attempt_at, status_code, error, finished_at
COMPLETE = """
UPDATE deliveries AS d SET
    status = CASE r.verdict WHEN 'delivered' THEN 'delivered' WHEN 'retry' THEN 'pending' ELSE 'dead' END,
    attempts = d.attempts + 1,
    next_attempt_at = CASE WHEN r.verdict = 'retry' THEN r.next_at ELSE d.next_attempt_at END,
    lease_owner = NULL,
    lease_until = NULL,
    updated_at = r.finished,
    delivered_at = CASE WHEN r.verdict = 'delivered' THEN r.finished ELSE d.delivered_at END,
    last_status_code = r.code,
    last_error = r.err
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::int[], $6::text[], $7::float8[])
    AS r (id, owner, verdict, next_at, code, err, finished)
WHERE d.id = r.id AND d.status = 'in_flight' AND d.lease_owner = r.owner
RETURNING d.id
"""

INSERT_ATTEMPTS = """
INSERT INTO attempts (delivery_id, started_at, status_code, latency_ms, error, response_excerpt, verdict,
    lease_owner, applied)
SELECT a.delivery_id, a.started_at, a.status_code, a.latency_ms, a.error, a.response_excerpt, a.verdict,
    a.lease_owner, a.applied
FROM unnest($1::bigint[], $2::float8[], $3::int[], $4::float8[], $5::text[], $6::text[], $7::text[], $8::text[],
    $9::bool[]) AS a (delivery_id, started_at, status_code, latency_ms, error, response_excerpt, verdict,
    lease_owner, applied)
WHERE EXISTS (SELECT 1 FROM deliveries AS d WHERE d.id = a.delivery_id)
"""

RECORD_ACTIVITY = """
INSERT INTO destination_activity (destination, last_success_at, last_failure_at)
SELECT d.destination, max(CASE WHEN a.verdict = 'delivered' THEN a.finished END),
    max(CASE WHEN a.verdict <> 'delivered' THEN a.finished END)
FROM unnest($1::bigint[], $2::text[], $3::float8[]) AS a (id, verdict, finished)
JOIN deliveries AS d ON d.id = a.id
GROUP BY d.destination ORDER BY d.destination
ON CONFLICT (destination) DO UPDATE SET
    last_success_at = GREATEST(destination_activity.last_success_at, excluded.last_success_at),
    last_failure_at = GREATEST(destination_activity.last_failure_at, excluded.last_failure_at)
"""

RELEASE = """
UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL
WHERE id = ANY($1::bigint[]) AND status = 'in_flight' AND lease_owner = $2
RETURNING id
"""

_RETRY_SET = (
    "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, lease_owner = NULL, lease_until = NULL, "
    "delivered_at = NULL, updated_at = $1 WHERE "
)
_NOT_DUE = "NOT (status = 'pending' AND next_attempt_at <= $1)"

# $1 now, $2 ids, $3 statuses
RETRY_IDS = f"{_RETRY_SET} id = ANY($2::bigint[]) AND status = ANY($3::text[]) AND {_NOT_DUE} RETURNING id"


def retry_filter(by_destination: bool) -> str:
    """$1 now, $2 statuses, $3 limit[, $4 destination]."""
    destination = " AND destination = $4" if by_destination else ""
    return (
        f"{_RETRY_SET} id IN (SELECT id FROM deliveries WHERE status = ANY($2::text[]){destination} "
        f"AND {_NOT_DUE} ORDER BY id LIMIT $3 FOR UPDATE) RETURNING id"
    )


# $1 statuses, $2 before, $3 limit, $4 after_id (the cursor makes a whole purge one pass over the table)
PURGEABLE = """
SELECT id FROM deliveries WHERE id > $4 AND status = ANY($1::text[]) AND updated_at < $2 ORDER BY id LIMIT $3
FOR UPDATE SKIP LOCKED
"""
PURGE_ATTEMPTS = "DELETE FROM attempts WHERE delivery_id = ANY($1::bigint[])"
PURGE_DELIVERIES = "DELETE FROM deliveries WHERE id = ANY($1::bigint[])"
PURGE_WEBHOOKS = """
DELETE FROM webhooks WHERE id IN (
    SELECT w.id FROM webhooks AS w
    WHERE w.received_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.webhook_id = w.id)
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING id
"""

REMAP_WEBHOOK = "UPDATE webhooks SET status = $1, error = $2, events = $3 WHERE id = $4 RETURNING id"

# arrays: destination, event_name, event_id, payload; $5 now
RESET_DELIVERIES = """
UPDATE deliveries AS d SET status = 'pending', next_attempt_at = $5, lease_owner = NULL, lease_until = NULL,
    delivered_at = NULL, updated_at = $5, payload = v.payload
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS v (destination, event_name, event_id, payload)
WHERE d.destination = v.destination AND d.event_name = v.event_name AND d.event_id = v.event_id
    AND d.status IN ('delivered', 'dead')
RETURNING d.id
"""

# -- reads -----------------------------------------------------------------------------------------------

_DESTINATIONS = """
WITH RECURSIVE dest (name) AS (
    SELECT min(destination) FROM deliveries
    UNION ALL
    SELECT (SELECT min(destination) FROM deliveries WHERE destination > dest.name) FROM dest
    WHERE dest.name IS NOT NULL)
"""

NEXT_DUE_ONE = """
SELECT least(
    (SELECT min(next_attempt_at) FROM deliveries WHERE destination = $1 AND status = 'pending'),
    (SELECT min(lease_until) FROM deliveries WHERE destination = $1 AND status = 'in_flight'))
"""

NEXT_DUE_ALL = f"""
{_DESTINATIONS}
SELECT least(
    (SELECT min((SELECT min(next_attempt_at) FROM deliveries WHERE destination = dest.name AND status = 'pending'))
     FROM dest WHERE dest.name IS NOT NULL),
    (SELECT min(lease_until) FROM deliveries WHERE status = 'in_flight'))
"""

STATS_COUNTS = "SELECT destination, status, count(*) FROM deliveries GROUP BY destination, status"
STATS_OLDEST = f"""
{_DESTINATIONS}
SELECT dest.name, (SELECT min(created_at) FROM deliveries WHERE destination = dest.name AND status = 'pending')
FROM dest WHERE dest.name IS NOT NULL
"""
STATS_ACTIVITY = "SELECT destination, last_success_at, last_failure_at FROM destination_activity"
STATS_WEBHOOKS = "SELECT status, count(*) FROM webhooks GROUP BY status"

GET_DELIVERY = f"SELECT {DELIVERY_SELECT}, payload FROM deliveries WHERE id = $1"
GET_ATTEMPTS = f"SELECT {ATTEMPT_SELECT} FROM attempts WHERE delivery_id = $1 ORDER BY started_at, id"
GET_WEBHOOK = f"SELECT {WEBHOOK_SUMMARY_SELECT}, headers, body, events FROM webhooks WHERE id = $1"
WEBHOOK_DELIVERIES = f"SELECT {DELIVERY_SELECT} FROM deliveries WHERE webhook_id = $1 ORDER BY id"
