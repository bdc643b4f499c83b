"""SQL for the SQLite outbox. Multi-row statements are built per row count (and cached), so one batch of N
operations costs a handful of statements, not N."""

from __future__ import annotations

from functools import lru_cache

from bridge.outbox.disabling import not_disabled
from bridge.outbox.rows import ATTEMPT_COLUMNS, CLAIM_COLUMNS, DELIVERY_COLUMNS, WEBHOOK_SUMMARY_COLUMNS

DELIVERY_SELECT = ", ".join(DELIVERY_COLUMNS)
ATTEMPT_SELECT = ", ".join(ATTEMPT_COLUMNS)
WEBHOOK_SUMMARY_SELECT = ", ".join(WEBHOOK_SUMMARY_COLUMNS)

# columns per row of the multi-row statements (chunk sizes are derived from SQLite's variable limit)
REQUEST_PARAMS = 5
WEBHOOK_PARAMS = 10
WEBHOOK_KEY_PARAMS = 5
WEBHOOK_KEY_LOOKUP_PARAMS = 3
DELIVERY_PARAMS = 12
DELIVERY_KEY_PARAMS = 6
DELIVERY_KEY_LOOKUP_PARAMS = 4
COMPLETE_PARAMS = 7
ATTEMPT_PARAMS = 9
ACTIVITY_PARAMS = 3
RESET_PARAMS = 2


@lru_cache(maxsize=512)
def values(rows: int, columns: int, template: str | None = None) -> str:
    """`(?, ?), (?, ?)` for rows x columns, or `template` repeated."""
    row = template or "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


def marks(count: int) -> str:
    return ", ".join("?" * count)


# Ingest. The single writer decides from the stored keys what is new (bridge/outbox/dedup.py) and assigns the row
# ids itself from sqlite_sequence, so every insert below is a plain multi-row INSERT with no RETURNING: a key that
# is somehow taken already fails the batch (and the provider retries) instead of passing silently.
NEXT_IDS = "SELECT name, seq FROM sqlite_sequence WHERE name IN ('webhook_requests', 'webhooks', 'deliveries')"


def find_webhook_keys(rows: int) -> str:
    """Params per row: source, kind, key. Returns the stored ones with their webhook id."""
    return (
        f"WITH k (source, kind, key) AS (VALUES {values(rows, WEBHOOK_KEY_LOOKUP_PARAMS)}) "
        "SELECT w.source, w.kind, w.key, w.webhook_id FROM k "
        "JOIN webhook_keys AS w ON w.source = k.source AND w.kind = k.kind AND w.key = k.key"
    )


def known_delivery_keys(rows: int) -> str:
    """Params per row: source, destination, event_name, event_id. Returns those that are stored (ingest's check)."""
    return (
        f"WITH k (source, destination, event_name, event_id) AS (VALUES {values(rows, DELIVERY_KEY_LOOKUP_PARAMS)}) "
        "SELECT dk.source, dk.destination, dk.event_name, dk.event_id FROM k "
        "JOIN delivery_keys AS dk ON dk.source = k.source AND dk.destination = k.destination "
        "AND dk.event_name = k.event_name AND dk.event_id = k.event_id"
    )


def find_delivery_keys(rows: int) -> str:
    """Params per row: source, destination, event_name, event_id. Returns the stored ones with the delivery they
    name and its status (NULL once the delivery was purged)."""
    return (
        f"WITH k (source, destination, event_name, event_id) AS (VALUES {values(rows, DELIVERY_KEY_LOOKUP_PARAMS)}) "
        "SELECT dk.source, dk.destination, dk.event_name, dk.event_id, dk.delivery_id, d.status FROM k "
        "JOIN delivery_keys AS dk ON dk.source = k.source AND dk.destination = k.destination "
        "AND dk.event_name = k.event_name AND dk.event_id = k.event_id "
        "LEFT JOIN deliveries AS d ON d.id = dk.delivery_id"
    )


def insert_requests(rows: int) -> str:
    """Params per row: id, source, received_at, headers, body."""
    return (
        f"INSERT INTO webhook_requests (id, source, received_at, headers, body) VALUES {values(rows, REQUEST_PARAMS)}"
    )


def insert_webhooks(rows: int) -> str:
    """Params per row: id, request_id, source, provider, provider_event_id, event_type, received_at, status, error,
    events."""
    return (
        "INSERT INTO webhooks (id, request_id, source, provider, provider_event_id, event_type, received_at, status, "
        f"error, events) VALUES {values(rows, WEBHOOK_PARAMS)}"
    )


def insert_webhook_keys(rows: int) -> str:
    """Params per row: source, kind, key, webhook_id, seen_at."""
    return (
        f"INSERT INTO webhook_keys (source, kind, key, webhook_id, seen_at) VALUES {values(rows, WEBHOOK_KEY_PARAMS)}"
    )


def insert_deliveries(rows: int) -> str:
    """Params per row: id, webhook_id, destination, event_name, event_id, payload, next_attempt_at, created_at,
    updated_at, ordering_key, ordering_at, ordering_seq."""
    row = "(?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?, ?)"
    return (
        "INSERT INTO deliveries (id, webhook_id, destination, event_name, event_id, payload, status, attempts, "
        "next_attempt_at, created_at, updated_at, ordering_key, ordering_at, ordering_seq) "
        f"VALUES {values(rows, DELIVERY_PARAMS, row)}"
    )


def insert_delivery_keys(rows: int) -> str:
    """Params per row: source, destination, event_name, event_id, delivery_id, seen_at."""
    return (
        "INSERT INTO delivery_keys (source, destination, event_name, event_id, delivery_id, seen_at) "
        f"VALUES {values(rows, DELIVERY_KEY_PARAMS)}"
    )


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


# The claim: nothing of a disabled destination (not_disabled); else the oldest due pending rows (index
# deliveries_due, already in order) and the oldest rows whose lease expired (index deliveries_lease, few rows),
# merged and cut to :limit; a row with an ordering key only while it is the first of its key (first_of_key).
# `UPDATE ... WHERE id IN (SELECT ... LIMIT)` is the portable form; this SQLite build puts RETURNING before
# ORDER BY/LIMIT in the other one.
CLAIM = f"""
UPDATE deliveries
SET status = 'in_flight', lease_owner = :owner, lease_until = :lease_until, updated_at = :now, parked_from = NULL
WHERE id IN (
    SELECT id FROM (
        SELECT * FROM (
            SELECT id, next_attempt_at FROM deliveries AS d
            WHERE destination = :destination AND status = 'pending' AND next_attempt_at <= :now
                AND {first_of_key("d", ":now")}
                AND {not_disabled(":destination")}
            ORDER BY next_attempt_at, id LIMIT :limit)
        UNION ALL
        SELECT * FROM (
            SELECT id, next_attempt_at FROM deliveries AS d
            WHERE destination = :destination AND status = 'in_flight' AND lease_until <= :now
                AND {first_of_key("d", ":now")}
                AND {not_disabled(":destination")}
            ORDER BY next_attempt_at, id LIMIT :limit)
        ORDER BY next_attempt_at, id LIMIT :limit))
RETURNING {", ".join(CLAIM_COLUMNS)}
"""


# Parking: a pending delivery that is due but blocked behind an earlier one of its key (retrying, or dead) is
# pushed back to when that one is due (at most PARK_SECONDS ahead), so claims stop walking past it on every
# round; its own time is kept in parked_from. Run after a claim that came back short (the due rows left are the
# blocked ones), at most PARK_SCAN rows at a time. A blocker in flight parks nothing (it ends soon). Parking is
# only a shortcut: a parked row is looked at again within PARK_SECONDS whatever happens.
PARK = """
UPDATE deliveries SET parked_from = coalesce(parked_from, next_attempt_at), next_attempt_at = p.until
FROM (
    SELECT id, min(blocker, :now + :park) AS until FROM (
        SELECT d.id, CASE
            WHEN EXISTS (
                SELECT 1 FROM deliveries AS f WHERE f.destination = d.destination AND f.ordering_key = d.ordering_key
                    AND f.status <> 'delivered' AND f.status = 'in_flight') THEN :now
            ELSE (
                SELECT CASE WHEN h.id = d.id THEN :now WHEN h.status = 'pending' THEN h.next_attempt_at
                    WHEN h.status = 'dead' THEN :far ELSE :now END
                FROM deliveries AS h
                WHERE h.destination = d.destination AND h.ordering_key = d.ordering_key
                    AND h.status <> 'delivered' AND h.skipped_at IS NULL
                ORDER BY h.ordering_at, h.ordering_seq, h.id LIMIT 1)
            END AS blocker
        FROM deliveries AS d
        WHERE d.destination = :destination AND d.status = 'pending' AND d.next_attempt_at <= :now
            AND d.ordering_key IS NOT NULL
        ORDER BY d.next_attempt_at LIMIT :scan)
    WHERE blocker > :now) AS p
WHERE deliveries.id = p.id
"""


def unpark(ids: int) -> str:
    """Params: the time, then ids of deliveries that stopped blocking their key (delivered, skipped): the rows
    parked behind them are due again (at their own time, or now)."""
    return f"""
UPDATE deliveries SET next_attempt_at = max(deliveries.parked_from, k.at), parked_from = NULL
FROM (SELECT destination, ordering_key, ? AS at FROM deliveries
      WHERE id IN ({marks(ids)}) AND ordering_key IS NOT NULL GROUP BY destination, ordering_key) AS k
WHERE deliveries.destination = k.destination AND deliveries.ordering_key = k.ordering_key
    AND deliveries.status <> 'delivered' AND deliveries.parked_from IS NOT NULL
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
    lease_owner, applied. Each attempt names its delivery's destination; attempts of deliveries that no longer
    exist (purged) are dropped."""
    return (
        "INSERT INTO attempts (delivery_id, started_at, status_code, latency_ms, error, response_excerpt, verdict, "
        "lease_owner, applied, destination) SELECT v.column1, v.column2, v.column3, v.column4, v.column5, "
        f"v.column6, v.column7, v.column8, v.column9, d.destination FROM (VALUES {values(rows, ATTEMPT_PARAMS)}) AS v "
        "JOIN deliveries AS d ON d.id = v.column1"
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
    "delivered_at = NULL, skipped_at = NULL, parked_from = NULL, updated_at = :now WHERE "
)
# a pending delivery that is already due keeps its place in the queue (a skipped one is dead, so it is not due)
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
        "AND skipped_at IS NULL "
        f"AND {_NOT_DUE} ORDER BY id LIMIT :limit) RETURNING id"
    )


def _purgeable(statuses: int) -> str:
    """Params: after_id, last_id, statuses..., before, limit. The id cursor makes a whole purge one pass over the
    table, and the id window (after_id, last_id] bounds what one transaction reads, however few rows match."""
    return (
        f"SELECT id FROM deliveries WHERE id > ? AND id <= ? AND status IN ({marks(statuses)}) AND updated_at < ? "
        "ORDER BY id LIMIT ?"
    )


MAX_DELIVERY_ID = "SELECT coalesce(max(id), 0) FROM deliveries"


def purge_attempts(statuses: int) -> str:
    return f"DELETE FROM attempts WHERE delivery_id IN ({_purgeable(statuses)})"


def purge_deliveries(statuses: int) -> str:
    return f"DELETE FROM deliveries WHERE id IN ({_purgeable(statuses)}) RETURNING id"


# no ORDER BY: the received_at index drives it. mapping_failed webhooks stay: a replay can still recover them.
PURGE_WEBHOOKS = """
DELETE FROM webhooks WHERE id IN (
    SELECT w.id FROM webhooks AS w
    WHERE w.received_at < ? AND w.status <> 'mapping_failed'
        AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.webhook_id = w.id)
    LIMIT ?)
RETURNING request_id
"""


def purge_requests(ids: int) -> str:
    """The given requests, where no webhook refers to them any more."""
    return (
        f"DELETE FROM webhook_requests WHERE id IN ({marks(ids)}) "
        "AND NOT EXISTS (SELECT 1 FROM webhooks AS w WHERE w.request_id = webhook_requests.id)"
    )


# Key purge: walk the keys older than the horizon in (seen_at, key) order, a chunk per transaction, and delete
# those whose row is gone. Params: before, cursor (seen_at and key columns), limit.
OLD_WEBHOOK_KEYS = """
SELECT k.seen_at, k.source, k.kind, k.key, EXISTS (SELECT 1 FROM webhooks AS w WHERE w.id = k.webhook_id)
FROM webhook_keys AS k
WHERE k.seen_at < ? AND (k.seen_at, k.source, k.kind, k.key) > (?, ?, ?, ?)
ORDER BY k.seen_at, k.source, k.kind, k.key LIMIT ?
"""
OLD_DELIVERY_KEYS = """
SELECT k.seen_at, k.source, k.destination, k.event_name, k.event_id,
    EXISTS (SELECT 1 FROM deliveries AS d WHERE d.id = k.delivery_id)
FROM delivery_keys AS k
WHERE k.seen_at < ? AND (k.seen_at, k.source, k.destination, k.event_name, k.event_id) > (?, ?, ?, ?, ?)
ORDER BY k.seen_at, k.source, k.destination, k.event_name, k.event_id LIMIT ?
"""


def delete_webhook_keys(rows: int) -> str:
    return f"DELETE FROM webhook_keys WHERE (source, kind, key) IN (VALUES {values(rows, 3)})"


def delete_delivery_keys(rows: int) -> str:
    return f"DELETE FROM delivery_keys WHERE (source, destination, event_name, event_id) IN (VALUES {values(rows, 4)})"


REMAP_WEBHOOK = "UPDATE webhooks SET status = ?, error = ?, events = ? WHERE id = ? RETURNING source"
WEBHOOK_SOURCE = "SELECT source FROM webhooks WHERE id = ?"


def reset_deliveries(rows: int) -> str:
    """Params: per row delivery id, payload; then now, now."""
    return f"""
WITH v (id, payload) AS (VALUES {values(rows, RESET_PARAMS)})
UPDATE deliveries SET status = 'pending', next_attempt_at = ?, lease_owner = NULL, lease_until = NULL,
    delivered_at = NULL, skipped_at = NULL, parked_from = NULL, updated_at = ?, payload = v.payload
FROM v
WHERE deliveries.id = v.id AND deliveries.status IN ('delivered', 'dead')
RETURNING deliveries.id
"""


IN_FLIGHT = "SELECT destination, id || ':' || lease_owner, lease_until FROM deliveries WHERE status = 'in_flight'"
RESET_IN_FLIGHT = (
    "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL WHERE status = 'in_flight' "
    "RETURNING id"
)


def skip(ids: int) -> str:
    """Params: skipped_at, then the ids."""
    return (
        "UPDATE deliveries SET status = 'dead', skipped_at = ?, lease_owner = NULL, lease_until = NULL, "
        "parked_from = NULL "
        f"WHERE id IN ({marks(ids)}) AND status IN ('pending', 'dead') AND skipped_at IS NULL RETURNING id"
    )


# -- lanes ----------------------------------------------------------------------------------------------

#: the previous process held the file's lock, so it is gone: no lane is held by anyone
RESET_LANES = "UPDATE lanes SET owner = NULL, lease_until = NULL WHERE owner IS NOT NULL"


def hold_lanes(rows: int) -> str:
    """Named params: lane0..laneN-1 (destinations), owner, until, now. Returns the destinations owner holds."""
    lanes = ", ".join(f"(:lane{i})" for i in range(rows))
    return f"""
INSERT INTO lanes (destination, owner, lease_until) SELECT v.column1, :owner, :until FROM (VALUES {lanes}) AS v
WHERE true
ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until
WHERE lanes.owner IS NULL OR lanes.owner = excluded.owner OR lanes.lease_until <= :now
RETURNING destination
"""


def release_lanes(rows: int) -> str:
    return f"UPDATE lanes SET owner = NULL, lease_until = NULL WHERE destination IN ({marks(rows)}) AND owner = ?"


SAVE_LANE_STATE = """
UPDATE lanes SET paused_until = :paused_until, factor = :factor, throttled_at = :throttled_at, cooldown = :cooldown
WHERE destination = :destination AND owner = :owner RETURNING destination
"""
LANE_STATE = "SELECT paused_until, factor, throttled_at, cooldown FROM lanes WHERE destination = ?"
# one row per request: a batch's attempts share the claim token and the start time
LANE_SENDS = """
SELECT DISTINCT started_at, latency_ms, lease_owner FROM attempts
WHERE destination = ? AND started_at >= ? AND latency_ms IS NOT NULL
"""
LANE_LEASED = """
SELECT id || ':' || lease_owner, lease_until FROM deliveries
WHERE destination = ? AND status = 'in_flight' AND substr(lease_owner, 1, ?) <> ?
"""
LANE_NOTED = "SELECT lease, answered_at FROM unrecorded_sends WHERE destination = ?"
NOTE_UNRECORDED = "INSERT OR IGNORE INTO unrecorded_sends (destination, lease, answered_at) VALUES (?, ?, ?)"
FORGET_UNRECORDED = "DELETE FROM unrecorded_sends WHERE destination = ? AND answered_at < ?"

# -- reads -----------------------------------------------------------------------------------------------

# distinct destinations as a loose index scan: O(destinations x log n) instead of a scan of every row
_DESTINATIONS = """
WITH RECURSIVE dest (name) AS (
    SELECT (SELECT min(destination) FROM deliveries)
    UNION ALL
    SELECT (SELECT min(destination) FROM deliveries WHERE destination > dest.name) FROM dest
    WHERE dest.name IS NOT NULL)
"""

# a disabled destination has nothing due (its deliveries are held until it is enabled)
NEXT_DUE_ONE = f"""
SELECT min(t) FROM (
    SELECT min(next_attempt_at) AS t FROM deliveries WHERE destination = :destination AND status = 'pending'
    UNION ALL
    SELECT min(lease_until) FROM deliveries WHERE destination = :destination AND status = 'in_flight')
WHERE {not_disabled(":destination")}
"""

NEXT_DUE_ALL = f"""
{_DESTINATIONS}
SELECT min(t) FROM (
    SELECT (SELECT min(next_attempt_at) FROM deliveries WHERE destination = dest.name AND status = 'pending') AS t
    FROM dest WHERE dest.name IS NOT NULL
    UNION ALL
    SELECT min(lease_until) FROM deliveries WHERE status = 'in_flight')
"""

# kept by triggers (migration 4); a count that went back to 0 is left out, as a GROUP BY would
STATS_COUNTS = "SELECT destination, status, n FROM delivery_counts WHERE n > 0"
# one probe of the partial index deliveries_pending_age per destination that has pending deliveries
STATS_OLDEST = """
SELECT destination, (SELECT min(created_at) FROM deliveries AS d
                     WHERE d.destination = c.destination AND d.status = 'pending')
FROM delivery_counts AS c WHERE c.status = 'pending' AND c.n > 0
"""
STATS_ACTIVITY = "SELECT destination, last_success_at, last_failure_at FROM destination_activity"
STATS_WEBHOOKS = "SELECT status, sum(n) FROM webhook_counts GROUP BY status HAVING sum(n) > 0"

GET_DELIVERY = f"SELECT {DELIVERY_SELECT}, payload FROM deliveries WHERE id = ?"
GET_ATTEMPTS = f"SELECT {ATTEMPT_SELECT} FROM attempts WHERE delivery_id = ? ORDER BY started_at, id"
GET_WEBHOOK = (
    f"SELECT {', '.join('w.' + c for c in WEBHOOK_SUMMARY_COLUMNS)}, r.headers, r.body, w.events "
    "FROM webhooks AS w JOIN webhook_requests AS r ON r.id = w.request_id WHERE w.id = ?"
)
WEBHOOK_DELIVERIES = f"SELECT {DELIVERY_SELECT} FROM deliveries WHERE webhook_id = ? ORDER BY id"
