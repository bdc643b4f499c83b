"""SQL for the PostgreSQL outbox. Multi-row writes pass arrays and `unnest` them: one round trip per statement."""

from __future__ import annotations

from bridge.outbox.disabling import not_disabled
from bridge.outbox.rows import ATTEMPT_COLUMNS, CLAIM_COLUMNS, DELIVERY_COLUMNS, WEBHOOK_SUMMARY_COLUMNS

DELIVERY_SELECT = ", ".join(DELIVERY_COLUMNS)
ATTEMPT_SELECT = ", ".join(ATTEMPT_COLUMNS)
WEBHOOK_SUMMARY_SELECT = ", ".join(WEBHOOK_SUMMARY_COLUMNS)

# Ingest, one request per transaction. Row ids come from the sequences up front ($1 webhooks, $2 deliveries, and
# one request id), so the key rows can name their rows in the same statement that claims them.
NEXT_IDS = """
SELECT ARRAY(SELECT nextval('webhooks_id_seq') FROM generate_series(1, $1)),
    ARRAY(SELECT nextval('deliveries_id_seq') FROM generate_series(1, $2)),
    nextval('webhook_requests_id_seq')
"""

NEXT_DELIVERY_IDS = "SELECT ARRAY(SELECT nextval('deliveries_id_seq') FROM generate_series(1, $1))"

# The dedup gate: $1 source, $2 body key, $3 the body key's webhook id, $4 event keys, $5 their webhook ids,
# $6 seen_at. ON CONFLICT DO NOTHING waits for a concurrent transaction holding the same key and then skips it,
# so of two concurrent equal requests exactly one claims the keys. Returns whether the body key was new and which
# event keys were. Keys are inserted in key order so overlapping requests queue instead of deadlocking.
CLAIM_WEBHOOK_KEYS = """
WITH body AS (
    INSERT INTO webhook_keys (source, kind, key, webhook_id, seen_at) VALUES ($1, 'body', $2, $3, $6)
    ON CONFLICT DO NOTHING RETURNING key
), events AS (
    INSERT INTO webhook_keys (source, kind, key, webhook_id, seen_at)
    SELECT $1, 'event', u.key, u.webhook_id, $6 FROM unnest($4::text[], $5::bigint[]) AS u (key, webhook_id)
    ORDER BY u.key
    ON CONFLICT DO NOTHING RETURNING key
)
SELECT EXISTS (SELECT 1 FROM body), ARRAY(SELECT key FROM events)
"""
# $1 source, $2 kind, $3 keys
FIND_WEBHOOK_KEYS = "SELECT key, webhook_id FROM webhook_keys WHERE source = $1 AND kind = $2 AND key = ANY($3::text[])"
# $1 source, $2 body key, $3 webhook id
SET_BODY_KEY = "UPDATE webhook_keys SET webhook_id = $3 WHERE source = $1 AND kind = 'body' AND key = $2"

# $1 request id, $2 source, $3 received_at, $4 headers, $5 body, $6 provider; arrays $7 ids, $8 provider event
# ids, $9 event types, $10 statuses, $11 errors, $12 events
INSERT_REQUEST = """
WITH r AS (
    INSERT INTO webhook_requests (id, source, received_at, headers, body) VALUES ($1, $2, $3, $4, $5) RETURNING id
)
INSERT INTO webhooks (id, request_id, source, provider, provider_event_id, event_type, received_at, status, error,
    events)
OVERRIDING SYSTEM VALUE
SELECT u.id, (SELECT id FROM r), $2, $6, u.provider_event_id, u.event_type, $3, u.status, u.error, u.events
FROM unnest($7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[])
    AS u (id, provider_event_id, event_type, status, error, events)
"""

# $1 source, $2 now; arrays $3 delivery ids, $4 webhook ids, $5 destinations, $6 event names, $7 event ids,
# $8 payloads, $9 ordering keys, $10 ordering times, $11 ordering sequences. Claims each fact's key and inserts the
# deliveries whose keys were new. Returns their webhook ids.
INSERT_DELIVERIES = """
WITH u AS (
    SELECT * FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::text[],
        $10::float8[], $11::bigint[])
        AS u (id, webhook_id, destination, event_name, event_id, payload, ordering_key, ordering_at, ordering_seq)
), k AS (
    INSERT INTO delivery_keys (source, destination, event_name, event_id, delivery_id, seen_at)
    SELECT $1, u.destination, u.event_name, u.event_id, u.id, $2 FROM u
    ORDER BY u.destination, u.event_name, u.event_id
    ON CONFLICT DO NOTHING RETURNING delivery_id
)
INSERT INTO deliveries (id, webhook_id, destination, event_name, event_id, payload, status, attempts,
    next_attempt_at, created_at, updated_at, ordering_key, ordering_at, ordering_seq)
OVERRIDING SYSTEM VALUE
SELECT u.id, u.webhook_id, u.destination, u.event_name, u.event_id, u.payload, 'pending', 0, $2, $2, $2,
    u.ordering_key, u.ordering_at, u.ordering_seq
FROM u JOIN k ON k.delivery_id = u.id
RETURNING webhook_id, destination, event_name, event_id
"""

# $1 source; arrays $2 destinations, $3 event names, $4 event ids. The stored keys with the delivery each names and
# its status (NULL once purged).
FIND_DELIVERY_KEYS = """
SELECT dk.destination, dk.event_name, dk.event_id, dk.delivery_id, d.status
FROM unnest($2::text[], $3::text[], $4::text[]) AS u (destination, event_name, event_id)
JOIN delivery_keys AS dk ON dk.source = $1 AND dk.destination = u.destination AND dk.event_name = u.event_name
    AND dk.event_id = u.event_id
LEFT JOIN deliveries AS d ON d.id = dk.delivery_id
"""
LOCK_DELIVERIES = "SELECT id, status FROM deliveries WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"

def first_of_key(row: str, now: str) -> str:
    """True where the delivery `row` may be claimed as far as ordering goes: it has no ordering key, or it is the
    first open delivery of its key (open: pending, in flight, or dead and not skipped) and no other of its key is
    leased until after `now`. Served by the partial index deliveries_order."""
    leased = f"o.status = 'in_flight' AND o.lease_until > {now}"
    return f"""({row}.ordering_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM deliveries AS o
        WHERE o.destination = {row}.destination AND o.ordering_key = {row}.ordering_key AND o.status <> 'delivered'
            AND o.id <> {row}.id AND o.skipped_at IS NULL
            AND ((o.ordering_at, o.ordering_seq, o.id) < ({row}.ordering_at, {row}.ordering_seq, {row}.id)
                OR ({leased}))))"""


#: claims of one destination take turns (a transaction-scoped lock; $1 destination), so two claimers never both
#: see a key's first delivery as unleased and take it and its successor
CLAIM_TURN = "SELECT pg_advisory_xact_lock(1651663212, hashtext($1))"

# $1 destination, $2 now, $3 limit, $4 owner, $5 lease_until; nothing of a disabled destination. SKIP LOCKED:
# concurrent claimers take disjoint rows.
CLAIM = f"""
WITH pending AS (
    SELECT id, next_attempt_at FROM deliveries AS d
    WHERE destination = $1 AND status = 'pending' AND next_attempt_at <= $2 AND {first_of_key("d", "$2")}
        AND {not_disabled("$1")}
    ORDER BY next_attempt_at, id LIMIT $3
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, next_attempt_at FROM deliveries AS d
    WHERE destination = $1 AND status = 'in_flight' AND lease_until <= $2 AND {first_of_key("d", "$2")}
        AND {not_disabled("$1")}
    ORDER BY next_attempt_at, id LIMIT $3
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) AS due
    ORDER BY next_attempt_at, id LIMIT $3
)
UPDATE deliveries AS d SET status = 'in_flight', lease_owner = $4, lease_until = $5, updated_at = $2,
    parked_from = NULL
FROM chosen WHERE d.id = chosen.id
RETURNING {", ".join("d." + column for column in CLAIM_COLUMNS)}
"""

# Parking (see sqlite_queries.PARK): $1 destination, $2 now, $3 park seconds, $4 far, $5 rows to scan at most
PARK = """
UPDATE deliveries AS u SET parked_from = coalesce(u.parked_from, u.next_attempt_at), next_attempt_at = p.until
FROM (
    SELECT id, least(blocker, $2 + $3) AS until FROM (
        SELECT d.id, CASE
            WHEN EXISTS (
                SELECT 1 FROM deliveries AS f WHERE f.destination = d.destination AND f.ordering_key = d.ordering_key
                    AND f.status <> 'delivered' AND f.status = 'in_flight') THEN $2
            ELSE (
                SELECT CASE WHEN h.id = d.id THEN $2 WHEN h.status = 'pending' THEN h.next_attempt_at
                    WHEN h.status = 'dead' THEN $4 ELSE $2 END
                FROM deliveries AS h
                WHERE h.destination = d.destination AND h.ordering_key = d.ordering_key
                    AND h.status <> 'delivered' AND h.skipped_at IS NULL
                ORDER BY h.ordering_at, h.ordering_seq, h.id LIMIT 1)
            END AS blocker
        FROM deliveries AS d
        WHERE d.destination = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 AND d.ordering_key IS NOT NULL
        ORDER BY d.next_attempt_at LIMIT $5) AS b
    WHERE blocker > $2) AS p
WHERE u.id = p.id AND u.status = 'pending'
"""

# $1 the time, $2 ids of deliveries that stopped blocking their key: what was parked behind them is due again
UNPARK = """
UPDATE deliveries AS u SET next_attempt_at = greatest(u.parked_from, $1), parked_from = NULL
FROM (SELECT DISTINCT destination, ordering_key FROM deliveries
      WHERE id = ANY($2::bigint[]) AND ordering_key IS NOT NULL) AS k
WHERE u.destination = k.destination AND u.ordering_key = k.ordering_key AND u.status <> 'delivered'
    AND u.parked_from IS NOT NULL
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

# each attempt names its delivery's destination (a lane's recent requests are one index range); attempts of
# deliveries purged meanwhile are dropped
INSERT_ATTEMPTS = """
INSERT INTO attempts (delivery_id, started_at, status_code, latency_ms, error, response_excerpt, verdict,
    lease_owner, applied, destination)
SELECT a.delivery_id, a.started_at, a.status_code, a.latency_ms, a.error, a.response_excerpt, a.verdict,
    a.lease_owner, a.applied, d.destination
FROM unnest($1::bigint[], $2::float8[], $3::int[], $4::float8[], $5::text[], $6::text[], $7::text[], $8::text[],
    $9::bool[]) AS a (delivery_id, started_at, status_code, latency_ms, error, response_excerpt, verdict,
    lease_owner, applied)
JOIN deliveries AS d ON d.id = a.delivery_id
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
    "delivered_at = NULL, skipped_at = NULL, parked_from = NULL, updated_at = $1 WHERE "
)
_NOT_DUE = "NOT (status = 'pending' AND next_attempt_at <= $1)"

# $1 now, $2 ids, $3 statuses
RETRY_IDS = f"{_RETRY_SET} id = ANY($2::bigint[]) AND status = ANY($3::text[]) AND {_NOT_DUE} RETURNING id"


def retry_filter(by_destination: bool) -> str:
    """$1 now, $2 statuses, $3 limit[, $4 destination]."""
    destination = " AND destination = $4" if by_destination else ""
    return (
        f"{_RETRY_SET} id IN (SELECT id FROM deliveries WHERE status = ANY($2::text[]){destination} "
        f"AND skipped_at IS NULL AND {_NOT_DUE} ORDER BY id LIMIT $3 FOR UPDATE) RETURNING id"
    )


# $1 statuses, $2 before, $3 limit, $4 after_id (the cursor makes a whole purge one pass over the table)
PURGEABLE = """
SELECT id FROM deliveries WHERE id > $4 AND status = ANY($1::text[]) AND updated_at < $2 ORDER BY id LIMIT $3
FOR UPDATE SKIP LOCKED
"""
PURGE_ATTEMPTS = "DELETE FROM attempts WHERE delivery_id = ANY($1::bigint[])"
PURGE_DELIVERIES = "DELETE FROM deliveries WHERE id = ANY($1::bigint[])"
# mapping_failed webhooks stay: a replay can still recover them
PURGE_WEBHOOKS = """
DELETE FROM webhooks WHERE id IN (
    SELECT w.id FROM webhooks AS w
    WHERE w.received_at < $1 AND w.status <> 'mapping_failed'
        AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.webhook_id = w.id)
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING request_id
"""
PURGE_REQUESTS = """
DELETE FROM webhook_requests AS r WHERE r.id = ANY($1::bigint[])
    AND NOT EXISTS (SELECT 1 FROM webhooks AS w WHERE w.request_id = r.id)
"""

# Key purge, a chunk per transaction in (seen_at, key) order: $1 before, $2.. the cursor, then the limit.
OLD_WEBHOOK_KEYS = """
SELECT k.seen_at, k.source, k.kind, k.key, EXISTS (SELECT 1 FROM webhooks AS w WHERE w.id = k.webhook_id)
FROM webhook_keys AS k
WHERE k.seen_at < $1 AND (k.seen_at, k.source, k.kind, k.key) > ($2, $3, $4, $5)
ORDER BY k.seen_at, k.source, k.kind, k.key LIMIT $6
"""
OLD_DELIVERY_KEYS = """
SELECT k.seen_at, k.source, k.destination, k.event_name, k.event_id,
    EXISTS (SELECT 1 FROM deliveries AS d WHERE d.id = k.delivery_id)
FROM delivery_keys AS k
WHERE k.seen_at < $1 AND (k.seen_at, k.source, k.destination, k.event_name, k.event_id) > ($2, $3, $4, $5, $6)
ORDER BY k.seen_at, k.source, k.destination, k.event_name, k.event_id LIMIT $7
"""
DELETE_WEBHOOK_KEYS = """
DELETE FROM webhook_keys AS k USING unnest($1::text[], $2::text[], $3::text[]) AS u (source, kind, key)
WHERE k.source = u.source AND k.kind = u.kind AND k.key = u.key
"""
DELETE_DELIVERY_KEYS = """
DELETE FROM delivery_keys AS k
USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u (source, destination, event_name, event_id)
WHERE k.source = u.source AND k.destination = u.destination AND k.event_name = u.event_name
    AND k.event_id = u.event_id
"""

# $1 skipped_at, $2 ids
SKIP = """
UPDATE deliveries SET status = 'dead', skipped_at = $1, lease_owner = NULL, lease_until = NULL, parked_from = NULL
WHERE id = ANY($2::bigint[]) AND status IN ('pending', 'dead') AND skipped_at IS NULL
RETURNING id, destination
"""

# -- lanes ---------------------------------------------------------------------------------------------

# $1 destinations, $2 owner, $3 lease_until, $4 now. Granted where free, run out, or held by owner already; in
# destination order, so two dispatchers asking at once queue on the rows instead of deadlocking.
HOLD_LANES = """
INSERT INTO lanes (destination, owner, lease_until)
SELECT name, $2, $3 FROM unnest($1::text[]) AS u (name) ORDER BY name
ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
WHERE lanes.owner IS NULL OR lanes.owner = excluded.owner OR lanes.lease_until <= $4
RETURNING destination
"""
RELEASE_LANES = """
UPDATE lanes SET owner = NULL, lease_until = NULL WHERE destination = ANY($1::text[]) AND owner = $2
RETURNING destination
"""
# a live dispatcher's presence: a `lanes` row named PRESENCE + owner (no destination name starts with it: names
# are slugs); $1 that name, $2 owner, $3 now, $4 its lease end. Expired presences (of dispatchers that died or left)
# are deleted; the others alive are counted (this statement's own upsert is not visible to its SELECT)
PRESENCE = "@"
BEAT = """
WITH gone AS (
    DELETE FROM lanes WHERE starts_with(destination, '@') AND destination <> $1
    AND (lease_until IS NULL OR lease_until <= $3)
), beat AS (
    INSERT INTO lanes (destination, owner, lease_until) VALUES ($1, $2, $4)
    ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
)
SELECT count(*) FROM lanes WHERE starts_with(destination, '@') AND destination <> $1 AND lease_until > $3
"""
SAVE_LANE_STATE = """
UPDATE lanes SET paused_until = $3, factor = $4, throttled_at = $5, cooldown = $6
WHERE destination = $1 AND owner = $2 RETURNING destination
"""
LANE_STATE = "SELECT paused_until, factor, throttled_at, cooldown FROM lanes WHERE destination = $1"
# one row per request: a batch's attempts share the claim token and the start time
LANE_SENDS = """
SELECT DISTINCT started_at, latency_ms, lease_owner FROM attempts
WHERE destination = $1 AND started_at >= $2 AND latency_ms IS NOT NULL
"""
# $1 destination, $2 the asking owner's claim-token prefix
LANE_LEASED = """
SELECT id::text || ':' || lease_owner, lease_until FROM deliveries
WHERE destination = $1 AND status = 'in_flight' AND NOT starts_with(lease_owner, $2)
"""
LANE_NOTED = "SELECT lease, answered_at FROM unrecorded_sends WHERE destination = $1"
# $1 destination, $2 leases, $3 their answer times, $4 forget notes answered before this
NOTE_UNRECORDED = """
INSERT INTO unrecorded_sends (destination, lease, answered_at)
SELECT $1, lease, answered_at FROM unnest($2::text[], $3::double precision[]) AS n (lease, answered_at)
ON CONFLICT DO NOTHING
"""
FORGET_UNRECORDED = "DELETE FROM unrecorded_sends WHERE destination = $1 AND answered_at < $2"

REMAP_WEBHOOK = "UPDATE webhooks SET status = $1, error = $2, events = $3 WHERE id = $4 RETURNING source"
WEBHOOK_SOURCE = "SELECT source FROM webhooks WHERE id = $1"

# arrays: delivery ids, payloads; $3 now
RESET_DELIVERIES = """
UPDATE deliveries AS d SET status = 'pending', next_attempt_at = $3, lease_owner = NULL, lease_until = NULL,
    delivered_at = NULL, skipped_at = NULL, parked_from = NULL, updated_at = $3, payload = v.payload
FROM unnest($1::bigint[], $2::bytea[]) AS v (id, payload)
WHERE d.id = v.id AND d.status IN ('delivered', 'dead')
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

# a disabled destination has nothing due (its deliveries are held until it is enabled)
NEXT_DUE_ONE = f"""
SELECT least(
    (SELECT min(next_attempt_at) FROM deliveries WHERE destination = $1 AND status = 'pending'),
    (SELECT min(lease_until) FROM deliveries WHERE destination = $1 AND status = 'in_flight'))
WHERE {not_disabled("$1")}
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
GET_WEBHOOK = (
    f"SELECT {', '.join('w.' + c for c in WEBHOOK_SUMMARY_COLUMNS)}, r.headers, r.body, w.events "
    "FROM webhooks AS w JOIN webhook_requests AS r ON r.id = w.request_id WHERE w.id = $1"
)
WEBHOOK_DELIVERIES = f"SELECT {DELIVERY_SELECT} FROM deliveries WHERE webhook_id = $1 ORDER BY id"
