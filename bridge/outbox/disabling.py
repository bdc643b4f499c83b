"""Disabled destinations in the outbox: the SQL both stores run, and the rows made into `Disabled`.

The state lives in the destination's `lanes` row (disabled_at, disabled_reason, disabled_by; all NULL: enabled),
beside its lease and its limiter's state, so every replica sharing the store sees it and it outlives restarts.
The claim and `next_due_at` of both stores carry `not_disabled(...)`, so a disabled destination's deliveries are
neither claimed nor announced as due; `complete` disables the destination of an attempt that says `disables`
in the same transaction that records the attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.outbox.base import Disabled, DisabledBy

COLUMNS = ("disabled_at", "disabled_reason", "disabled_by")


def not_disabled(destination: str) -> str:
    """An SQL condition, true unless the destination named by the expression `destination` is disabled (one
    probe of the lanes primary key, evaluated once per statement)."""
    return f"NOT EXISTS (SELECT 1 FROM lanes AS dl WHERE dl.destination = {destination} AND dl.disabled_at IS NOT NULL)"


_KEEP_FIRST = (
    "ON CONFLICT (destination) DO UPDATE SET disabled_at = excluded.disabled_at, "
    "disabled_reason = excluded.disabled_reason, disabled_by = excluded.disabled_by "
    "WHERE lanes.disabled_at IS NULL RETURNING destination"
)

# -- SQLite ------------------------------------------------------------------------------------------------

#: destination, at, reason, by
SQLITE_DISABLE = (
    f"INSERT INTO lanes (destination, disabled_at, disabled_reason, disabled_by) VALUES (?, ?, ?, ?) {_KEEP_FIRST}"
)
#: at, reason, delivery id: the delivery's destination, by itself
SQLITE_DISABLE_BY_DELIVERY = (
    "INSERT INTO lanes (destination, disabled_at, disabled_reason, disabled_by) "
    f"SELECT d.destination, ?, ?, 'destination' FROM deliveries AS d WHERE d.id = ? {_KEEP_FIRST}"
)
SQLITE_STATE = "SELECT disabled_at, disabled_reason, disabled_by FROM lanes WHERE destination = ?"
SQLITE_ENABLE = "UPDATE lanes SET disabled_at = NULL, disabled_reason = NULL, disabled_by = NULL WHERE destination = ?"
LIST = "SELECT destination, disabled_at, disabled_reason, disabled_by FROM lanes WHERE disabled_at IS NOT NULL"

# -- PostgreSQL ----------------------------------------------------------------------------------------------

PG_DISABLE = (
    "INSERT INTO lanes (destination, disabled_at, disabled_reason, disabled_by) VALUES ($1, $2, $3, $4) "
    f"{_KEEP_FIRST}"
)
#: arrays: delivery ids, at, reasons. One row per destination (the first reason of the batch), in destination order
PG_DISABLE_BY_DELIVERY = f"""
INSERT INTO lanes (destination, disabled_at, disabled_reason, disabled_by)
SELECT DISTINCT ON (d.destination) d.destination, v.at, v.reason, 'destination'
FROM unnest($1::bigint[], $2::float8[], $3::text[]) WITH ORDINALITY AS v (id, at, reason, n)
JOIN deliveries AS d ON d.id = v.id
ORDER BY d.destination, v.n
{_KEEP_FIRST}
"""
#: the state before, of a destination that was disabled (no row: it was not)
PG_ENABLE = """
UPDATE lanes AS l SET disabled_at = NULL, disabled_reason = NULL, disabled_by = NULL
FROM lanes AS old
WHERE l.destination = $1 AND old.destination = l.destination AND l.disabled_at IS NOT NULL
RETURNING old.disabled_at, old.disabled_reason, old.disabled_by
"""


def state(row: Sequence[Any] | None) -> Disabled | None:
    """(disabled_at, disabled_reason, disabled_by) as Disabled; None when the destination is enabled."""
    if row is None or row[0] is None:
        return None
    by: DisabledBy = "ops" if row[2] == "ops" else "destination"
    return Disabled(at=float(row[0]), reason=str(row[1] or ""), by=by)


def states(rows: Sequence[Sequence[Any]]) -> dict[str, Disabled]:
    """LIST rows as {destination: Disabled}."""
    found = {str(row[0]): state(row[1:]) for row in rows}
    return {name: value for name, value in sorted(found.items()) if value is not None}
