"""The SQLite outbox's write operations. Each runs synchronously in the writer thread, inside the transaction of
its batch (see sqlite_writer.py), and returns its caller's answer; consecutive ingests and completions are merged
into multi-row statements."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.errors import OutboxError
from bridge.outbox import dedup, disabling
from bridge.outbox import sqlite_queries as q
from bridge.outbox.base import AttemptResult, Delivery, Disabled, LaneState, NewDelivery, RemapResult
from bridge.outbox.rows import (
    FAR,
    PARK_SCAN,
    PARK_SECONDS,
    clean_text,
    finished_at,
    ordering_values,
    retry_at,
    sort_claimed,
    unique_rounds,
)
from bridge.outbox.sqlite_connection import Statements, chunks
from bridge.outbox.sqlite_ingest import ingest

#: kinds whose consecutive ops are merged into one multi-row statement
MERGED = frozenset({"ingest", "complete"})


@dataclass(frozen=True, slots=True)
class Rejected:
    """An op that was refused without writing anything; its caller gets `error`, the rest of the batch commits."""

    error: Exception


def fact_keys(source: str, deliveries: Sequence[NewDelivery]) -> list[dedup.DeliveryKey]:
    return list(dict.fromkeys((source, *dedup.fact(d)) for d in deliveries))


def fact_states(rows: Sequence[Sequence[Any]]) -> dict[dedup.Fact, tuple[int, dedup.KeyState]]:
    """find_delivery_keys rows as {fact: (delivery id, key state)}."""
    return {(row[1], row[2], row[3]): (int(row[4]), dedup.key_state(row[4], row[5])) for row in rows}


def _state_params(state: LaneState) -> dict[str, Any]:
    return {
        "paused_until": state.paused_until,
        "factor": state.factor,
        "throttled_at": state.throttled_at,
        "cooldown": state.cooldown,
    }


class WriteOps(Statements):
    """Every write of the SQLite outbox, by op kind (`run_merged` for MERGED kinds, `run_one` for the others)."""

    def run_merged(self, kind: str, args: list[Any]) -> list[Any]:
        if kind == "ingest":
            return list(ingest(self, args))
        if kind == "complete":
            return self._complete(args)
        raise AssertionError(kind)

    def run_one(self, kind: str, arg: Any) -> Any:
        handler: Callable[[Any], Any] = getattr(self, f"op_{kind}")
        return handler(arg)

    def op_claim(self, arg: tuple[str, int, float, float, str]) -> list[Delivery]:
        destination, limit, now, lease_seconds, owner = arg
        params = {"destination": destination, "limit": limit, "now": now}
        params.update(lease_until=now + lease_seconds, owner=owner)
        claimed = self.sql(q.CLAIM, params)
        if len(claimed) < limit:  # what is still due is blocked behind its key: park it (see q.PARK)
            park = {"destination": destination, "now": now, "park": PARK_SECONDS, "far": FAR, "scan": PARK_SCAN}
            self.sql(q.PARK, park)
        return sort_claimed(claimed)

    def op_release(self, arg: tuple[list[int], str]) -> int:
        ids, owner = arg
        released = 0
        for chunk in chunks(ids, self.rows_per_statement(1) - 1):
            released += len(self.sql(q.release(len(chunk)), [*chunk, owner]))
        return released

    def op_retry_ids(self, arg: tuple[float, list[int], tuple[str, ...]]) -> int:
        now, ids, statuses = arg
        retried = 0
        for chunk in chunks(ids, self.rows_per_statement(1) - 8):
            params: dict[str, Any] = {"now": now}
            params.update({f"id{i}": value for i, value in enumerate(chunk)})
            params.update({f"status{i}": value for i, value in enumerate(statuses)})
            retried += len(self.sql(q.retry_ids(len(chunk), len(statuses)), params))
        return retried

    def op_retry_filter(self, arg: tuple[float, tuple[str, ...], str | None, int]) -> int:
        now, statuses, destination, limit = arg
        params: dict[str, Any] = {"now": now, "limit": limit}
        params.update({f"status{i}": value for i, value in enumerate(statuses)})
        if destination is not None:
            params["destination"] = destination
        return len(self.sql(q.retry_filter(len(statuses), destination is not None), params))

    def op_skip(self, arg: tuple[list[int], float]) -> int:
        ids, now = arg
        skipped = 0
        for chunk in chunks(ids, self.rows_per_statement(1) - 1):
            done = [int(row[0]) for row in self.sql(q.skip(len(chunk)), [now, *chunk])]
            if done:
                self.sql(q.unpark(len(done)), [now, *done])
            skipped += len(done)
        return skipped

    def op_hold_lanes(self, arg: tuple[list[str], str, float, float]) -> list[str]:
        destinations, owner, now, until = arg
        held: list[str] = []
        for chunk in chunks(destinations, self.rows_per_statement(1) - 3):
            params: dict[str, Any] = {"owner": owner, "until": until, "now": now}
            params.update({f"lane{i}": name for i, name in enumerate(chunk)})
            held += [str(row[0]) for row in self.sql(q.hold_lanes(len(chunk)), params)]
        return held

    def op_release_lanes(self, arg: tuple[list[str], str]) -> None:
        destinations, owner = arg
        for chunk in chunks(destinations, self.rows_per_statement(1) - 1):
            self.sql(q.release_lanes(len(chunk)), [*chunk, owner])

    def op_save_lane_state(self, arg: tuple[str, str, LaneState]) -> bool:
        destination, owner, state = arg
        params = {"destination": destination, "owner": owner, **_state_params(state)}
        return bool(self.sql(q.SAVE_LANE_STATE, params))

    def op_note_unrecorded(self, arg: tuple[str, list[tuple[str, float]], float]) -> None:
        destination, sends, before = arg
        for lease, answered_at in sends:
            self.sql(q.NOTE_UNRECORDED, [destination, lease, answered_at])
        self.sql(q.FORGET_UNRECORDED, [destination, before])

    def op_disable(self, arg: tuple[str, Disabled]) -> bool:
        destination, disabled = arg
        return bool(self.sql(disabling.SQLITE_DISABLE, [destination, disabled.at, disabled.reason, disabled.by]))

    def op_enable(self, destination: str) -> Disabled | None:
        rows = self.sql(disabling.SQLITE_STATE, [destination])
        before = disabling.state(rows[0] if rows else None)
        if before is not None:
            self.sql(disabling.SQLITE_ENABLE, [destination])
        return before

    def op_call(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return fn(self.db)

    def op_purge_deliveries(self, arg: tuple[int, int, float, tuple[str, ...], int]) -> tuple[int, int]:
        """One chunk of the purge: at most `limit` rows deleted, among the ids (after_id, after_id + window]
        (window = PURGE_WINDOW): (rows deleted, the cursor for the next chunk)."""
        after_id, window, before, statuses, limit = arg
        params = [after_id, after_id + window, *statuses, before, limit]
        self.sql(q.purge_attempts(len(statuses)), params)
        ids = [int(row[0]) for row in self.sql(q.purge_deliveries(len(statuses)), params)]
        return len(ids), (max(ids) if len(ids) >= limit else after_id + window)

    def op_max_delivery_id(self, arg: None) -> int:
        return int(self.sql(q.MAX_DELIVERY_ID)[0][0])

    def op_purge_webhooks(self, arg: tuple[float, int]) -> int:
        before, limit = arg
        deleted = self.sql(q.PURGE_WEBHOOKS, [before, limit])
        requests = list(dict.fromkeys(int(row[0]) for row in deleted))
        for chunk in chunks(requests, self.rows_per_statement(1)):
            self.sql(q.purge_requests(len(chunk)), list(chunk))
        return len(deleted)

    def op_purge_keys(self, arg: tuple[str, float, tuple[Any, ...], int]) -> tuple[int, int, tuple[Any, ...]]:
        """One chunk of the key purge: (keys examined, keys deleted, cursor for the next chunk)."""
        table, before, cursor, limit = arg
        examine, delete = (
            (q.OLD_WEBHOOK_KEYS, q.delete_webhook_keys)
            if table == "webhook_keys"
            else (q.OLD_DELIVERY_KEYS, q.delete_delivery_keys)
        )
        rows = self.sql(examine, [before, *cursor, limit])
        width = len(cursor) - 1
        gone = [tuple(row[1:-1]) for row in rows if not row[-1]]
        self.many(delete, gone, width)
        return len(rows), len(gone), (tuple(rows[-1][:-1]) if rows else cursor)

    def op_remap(self, arg: tuple[Any, ...]) -> RemapResult | Rejected:
        webhook_id, status, error, events, deliveries, now, force = arg
        found = self.sql(q.REMAP_WEBHOOK, [status, clean_text(error), events, webhook_id])
        if not found:
            return Rejected(OutboxError(f"webhook {webhook_id} does not exist"))
        source = str(found[0][0])
        found_keys = self.many(q.find_delivery_keys, fact_keys(source, deliveries), q.DELIVERY_KEY_LOOKUP_PARAMS)
        states = fact_states(found_keys)
        actions = dedup.remap_actions(deliveries, {k: state for k, (_, state) in states.items()}, force=force)
        last = {str(name): int(seq) for name, seq in self.sql(q.NEXT_IDS)}
        ids = dedup.Ids(last.get("deliveries", 0))
        rows: list[tuple[Any, ...]] = []
        keys: list[tuple[Any, ...]] = []
        resets: list[tuple[int, bytes]] = []
        for delivery, action in zip(deliveries, actions, strict=True):
            if action == "create":
                delivery_id = ids.take()
                rows.append(
                    (delivery_id, webhook_id, *dedup.fact(delivery), delivery.payload, now, now, now)
                    + ordering_values(delivery)
                )
                keys.append((source, *dedup.fact(delivery), delivery_id, now))
            elif action == "reset":
                resets.append((states[dedup.fact(delivery)][0], delivery.payload))
        self.many(q.insert_deliveries, rows, q.DELIVERY_PARAMS)
        self.many(q.insert_delivery_keys, keys, q.DELIVERY_KEY_PARAMS)
        for chunk in chunks(resets, self.rows_per_statement(q.RESET_PARAMS)):
            flat = [value for row in chunk for value in row]
            self.sql(q.reset_deliveries(len(chunk)), [*flat, now, now])
        counts = dedup.count_actions(actions)
        return RemapResult(actions, counts["created"], counts["skipped"], counts["reset"])

    def _complete(self, batches: list[Sequence[AttemptResult]]) -> list[list[bool]]:
        flat = [result for results in batches for result in results]
        applied = [False] * len(flat)
        for round_ in unique_rounds(flat):
            rows = [
                (
                    flat[i].delivery_id,
                    flat[i].owner,
                    flat[i].verdict,
                    retry_at(flat[i]),
                    flat[i].status_code,
                    clean_text(flat[i].error),
                    finished_at(flat[i]),
                )
                for i in round_
            ]
            done = {int(row[0]) for row in self.many(q.complete, rows, q.COMPLETE_PARAMS)}
            for i in round_:
                applied[i] = flat[i].delivery_id in done
        delivered = [flat[i] for i, ok in enumerate(applied) if ok and flat[i].verdict == "delivered"]
        if delivered:  # what was parked behind them is due again
            at = max(finished_at(r) for r in delivered)
            for chunk in chunks([r.delivery_id for r in delivered], self.rows_per_statement(1) - 1):
                self.sql(q.unpark(len(chunk)), [at, *chunk])
        attempt_rows = [
            (r.delivery_id, r.started_at, r.status_code, r.latency_ms, clean_text(r.error))
            + (clean_text(r.response_excerpt), r.verdict, r.owner, int(ok))
            for r, ok in zip(flat, applied, strict=True)
        ]
        self.many(q.insert_attempts, attempt_rows, q.ATTEMPT_PARAMS)
        activity = [(r.delivery_id, r.verdict, finished_at(r)) for r in flat]
        self.many(q.record_activity, activity, q.ACTIVITY_PARAMS)
        for r in flat:  # the destination answered that it is gone: hold its deliveries (the first reason stays)
            if r.disables is not None:
                self.sql(disabling.SQLITE_DISABLE_BY_DELIVERY, [finished_at(r), clean_text(r.disables), r.delivery_id])
        out: list[list[bool]] = []
        start = 0
        for results in batches:
            out.append(applied[start : start + len(results)])
            start += len(results)
        return out
