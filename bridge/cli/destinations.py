"""`bridge outbox destinations | enable NAME | disable NAME [--reason TEXT]`: see the destinations and whether
each is disabled (a 410 Gone answer, or ops, holds its deliveries), enable one again (its held deliveries are sent)
or disable one by hand, through the ops API (bridge/ops/destinations.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

#: the `bridge outbox` actions about destinations rather than deliveries
ACTIONS = ("destinations", "enable", "disable")


def id_or_name(text: str) -> int | str:
    """The positional argument of `bridge outbox`: a delivery id (show, retry, skip) or a destination name."""
    return int(text) if text.isdigit() else text


def request(client: Any, args: argparse.Namespace) -> Any:
    """The ops API request for a destination action; None (after saying why) when the arguments do not do."""
    if args.action == "destinations":
        return client.get("/ops/destinations")
    name = args.id
    if name is None or name == "":
        print(f"error: outbox {args.action} needs a destination name", file=sys.stderr)
        return None
    body = {"reason": args.reason} if args.action == "disable" and args.reason else None
    return client.post(f"/ops/destinations/{name}/{args.action}", json=body)
