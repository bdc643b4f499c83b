"""Replay: run stored webhooks again through the current mappings.

Every stored webhook keeps its raw body and the headers its mapping may need, so it can be parsed and mapped
again after a mapping is fixed (mapping_failed → accepted), extended (ignored → accepted) or corrected. The
outbox skips deliveries whose (source, destination, event name, canonical id) is already known (by this webhook or
any other of its source), so a replay never sends a fact twice unless `force` resets the existing delivery.
`dry_run` asks the outbox for the same decisions by the same rule and writes nothing, so the plan it shows is
what the replay does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bridge.destinations.base import Destination
from bridge.errors import BridgeError
from bridge.ingest import map_event, route
from bridge.limits import DEFAULT_LIMITS, Limits
from bridge.mapping import MappingSet
from bridge.outbox.base import Outbox, RemapResult
from bridge.providers.base import Provider


def _key(event: Mapping[str, Any]) -> tuple[str, str]:
    return (str(event.get("name")), str(event.get("id")))


def diff_events(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Events added, removed and changed, matched by (name, id)."""
    old = {_key(e): e for e in before}
    new = {_key(e): e for e in after}
    return {
        "added": [list(k) for k in new if k not in old],
        "removed": [list(k) for k in old if k not in new],
        "changed": [list(k) for k in new if k in old and new[k] != old[k]],
    }


async def replay_webhook(
    outbox: Outbox,
    webhook: Mapping[str, Any],
    *,
    providers: Mapping[str, Provider],
    mappings: MappingSet,
    destinations: Mapping[str, Destination],
    now: float,
    dry_run: bool,
    force: bool,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Re-map one stored webhook (a row from outbox.get_webhook) and, unless dry_run, store the result."""
    report: dict[str, Any] = {"webhook_id": webhook["id"], "status_before": webhook["status"], "dry_run": dry_run}
    provider = providers.get(webhook["source"])
    if provider is None:
        report["error"] = f"source {webhook['source']!r} is no longer configured"
        return report
    headers = webhook.get("headers") or {}
    try:
        inbound = [e for e in provider.parse(webhook["body"], headers) if e.event_id == webhook["provider_event_id"]]
    except BridgeError as exc:
        report["error"] = f"stored body no longer parses: {exc}"
        return report
    if not inbound:
        report["error"] = "the stored body no longer contains this event"
        return report
    mapped = map_event(
        mappings.get(provider.mapping_name),
        inbound[0],
        headers,
        webhook["source"],
        provider.type,
        limits,
        received_at=webhook["received_at"],  # the first receipt's time, never the replay's
    )
    deliveries = route(mapped.events, destinations)
    outcome: RemapResult = await outbox.update_webhook_mapping(
        webhook["id"],
        mapped.status,
        mapped.error,
        orjson.dumps(mapped.events),
        deliveries,
        now=now,
        force=force,
        dry_run=dry_run,
    )
    planned = [
        {
            "destination": delivery.destination,
            "event_name": delivery.event_name,
            "event_id": delivery.event_id,
            "action": action,
        }
        for delivery, action in zip(deliveries, outcome.actions, strict=True)
    ]
    report.update(
        status_after=mapped.status,
        error_after=mapped.error,
        events=diff_events(webhook.get("events") or [], mapped.events),
        canonical=mapped.events,
        deliveries=planned,
    )
    if not dry_run:
        report["result"] = outcome.counts()
    return report
