"""`bridge outbox …`: deliveries and destinations through the running bridge's ops API (the same routes
`/ops/…` serve; docs/operations.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from bridge.cli import destinations
from bridge.cli.args import print_json, settings_of
from bridge.errors import ConfigError


def connect(args: argparse.Namespace) -> tuple[Any, str]:
    import httpx

    settings = settings_of(args)
    token = args.token or os.environ.get("BRIDGE_OPS_TOKEN") or settings.ops_token
    if not token:
        raise ConfigError("no ops token: set ops.token in the config, BRIDGE_OPS_TOKEN or --token")
    url = args.url or f"http://{settings.host}:{settings.port}"
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0), url


def call(args: argparse.Namespace, send: Callable[[Any], Any]) -> int:
    """Send one ops API request (`send(client)`; None: the arguments did not do, already said) and print its JSON
    answer; exit code 1 when the bridge cannot be reached or answers an error."""
    import httpx

    client, url = connect(args)
    try:
        with client:
            response = send(client)
    except httpx.HTTPError as exc:
        print(f"cannot reach the bridge at {url}: {exc}", file=sys.stderr)
        return 1
    if response is None:
        return 2
    if response.status_code >= 400:
        print(f"HTTP {response.status_code}: {response.text}", file=sys.stderr)
        return 1
    print_json(response.json())
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    if isinstance(args.id, str) and args.action not in destinations.ACTIONS:
        print(f"error: outbox {args.action} takes a delivery id, not {args.id!r}", file=sys.stderr)
        return 2
    return call(args, lambda client: _outbox_request(client, args))


def _outbox_request(client: Any, args: argparse.Namespace) -> Any:
    if args.action in destinations.ACTIONS:
        return destinations.request(client, args)
    if args.action == "status":
        return client.get("/ops/outbox")
    if args.action == "list":
        params = {k: v for k, v in (("status", args.status), ("destination", args.destination)) if v}
        params["limit"] = str(args.limit)
        if args.cursor:
            params["cursor"] = str(args.cursor)
        return client.get("/ops/deliveries", params=params)
    if args.action == "show":
        return client.get(f"/ops/deliveries/{args.id}")
    if args.action == "skip":
        if not args.id:
            print("error: outbox skip needs a delivery id", file=sys.stderr)
            return None
        return client.post(f"/ops/deliveries/{args.id}/skip")
    if args.action == "retry":
        if args.id:
            return client.post(f"/ops/deliveries/{args.id}/retry")
        body = {"status": args.status or "dead"}
        if args.destination:
            body["destination"] = args.destination
        return client.post("/ops/deliveries/retry", json=body)
    # purge: the service's retention rule, or rows older than --older-than-days
    purge: dict[str, object] = {}
    if args.older_than_days is not None:
        purge["older_than_days"] = args.older_than_days
    return client.post("/ops/outbox/purge", json=purge)


def add_parser(sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    outbox = with_config(sub.add_parser("outbox", help="deliveries and destinations, through the ops API"))
    outbox.add_argument("--url", help="bridge base URL (default: from the config's server section)")
    outbox.add_argument("--token", help="ops token (default: $BRIDGE_OPS_TOKEN or the config)")
    actions = ["status", "list", "show", "retry", "skip", "purge", *destinations.ACTIONS]
    outbox.add_argument("action", choices=actions)
    outbox.add_argument(
        "id", nargs="?", type=destinations.id_or_name, help="delivery id (show, retry, skip); or destination name"
    )
    outbox.add_argument("--reason", help="disable: why (shown on the status page and in /ops/outbox)")
    outbox.add_argument("--status", choices=["pending", "in_flight", "delivered", "dead"])
    outbox.add_argument("--destination")
    outbox.add_argument("--limit", type=int, default=50)
    outbox.add_argument("--cursor", type=int)
    outbox.add_argument(
        "--older-than-days",
        type=float,
        help="purge: delete finished rows older than this (default: the config's retention.delivered_days); "
        "dedup keys always follow retention.dedup_days",
    )
    outbox.set_defaults(func=cmd_outbox)
