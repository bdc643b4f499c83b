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


def cmd_outbox(args: argparse.Namespace) -> int:
    import httpx

    if isinstance(args.id, str) and args.action not in destinations.ACTIONS:
        print(f"error: outbox {args.action} takes a delivery id, not {args.id!r}", file=sys.stderr)
        return 2
    client, url = connect(args)
    try:
        with client:
            if args.action in destinations.ACTIONS:
                response = destinations.request(client, args)
                if response is None:
                    return 2
            elif args.action == "status":
                response = client.get("/ops/outbox")
            elif args.action == "list":
                params = {k: v for k, v in (("status", args.status), ("destination", args.destination)) if v}
                params["limit"] = str(args.limit)
                if args.cursor:
                    params["cursor"] = str(args.cursor)
                response = client.get("/ops/deliveries", params=params)
            elif args.action == "show":
                response = client.get(f"/ops/deliveries/{args.id}")
            elif args.action == "skip":
                if not args.id:
                    print("error: outbox skip needs a delivery id", file=sys.stderr)
                    return 2
                response = client.post(f"/ops/deliveries/{args.id}/skip")
            elif args.action == "retry":
                if args.id:
                    response = client.post(f"/ops/deliveries/{args.id}/retry")
                else:
                    body = {"status": args.status or "dead"}
                    if args.destination:
                        body["destination"] = args.destination
                    response = client.post("/ops/deliveries/retry", json=body)
            else:  # purge: the service's retention rule, or rows older than --older-than-days
                purge: dict[str, object] = {}
                if args.older_than_days is not None:
                    purge["older_than_days"] = args.older_than_days
                response = client.post("/ops/outbox/purge", json=purge)
    except httpx.HTTPError as exc:
        print(f"cannot reach the bridge at {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        print(f"HTTP {response.status_code}: {response.text}", file=sys.stderr)
        return 1
    print_json(response.json())
    return 0


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
