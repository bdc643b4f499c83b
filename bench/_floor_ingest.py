"""`bench.ingest`'s floor (ADR 0009): the least a durable webhook endpoint does for each request, written as plainly
as it goes: read the body, check the Stripe signature (HMAC-SHA256 over "t.body", constant-time compare), parse
the JSON for the event id, and commit the raw body to SQLite (WAL, synchronous=FULL) before answering, the commits
of requests that arrive meanwhile grouped (bench/_floor.py). No mapping, no deliveries, no dedup answer, no limits,
no logs: what no bridge can do without, so its ratio to bare bounds any bridge's on this machine and stack.

    FLOOR_SECRET=whsec_... FLOOR_DB=/tmp/floor.db python -m uvicorn bench._floor_ingest:app
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench._floor import GroupCommitter

SECRET = os.environ["FLOOR_SECRET"].encode()
DB = Path(os.environ["FLOOR_DB"])
with sqlite3.connect(DB) as _db:
    _db.execute("CREATE TABLE IF NOT EXISTS webhooks (event_id TEXT PRIMARY KEY, body BLOB NOT NULL)")
committer = GroupCommitter(DB)


def verified(body: bytes, header: str) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        expected = hmac.new(SECRET, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, parts.get("v1", ""))


async def webhook(request: Request) -> Response:
    body = await request.body()
    if not verified(body, request.headers.get("stripe-signature", "")):
        return Response(b'{"error":"bad signature"}', status_code=400, media_type="application/json")
    event_id = orjson.loads(body)["id"]
    await committer.submit(lambda db: db.execute("INSERT OR IGNORE INTO webhooks VALUES (?, ?)", (event_id, body)))
    return Response(b'{"status":"accepted"}', media_type="application/json")


app = Starlette(routes=[Route("/webhooks/stripe", webhook, methods=["POST"])])
