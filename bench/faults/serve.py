"""`bridge serve` for the trials that must change what a production process cannot: the clock, and for the
power-cut trial's control run, SQLite's durability.

    python -m bench.faults.serve --config FILE --port N [--clock-scale S --clock-origin T]
                                 [--unsafe-synchronous-normal]

It builds the app exactly as `bridge serve` does (same config, mappings, uvicorn options through
`bridge.cli.serve_app`), then:

--clock-scale S --clock-origin T   the bridge reads a `SharedScaledClock`: clock time runs S times faster than
                                   the wall clock from the wall instant T, so the trial and its sinks, which
                                   build the same clock from the same two numbers, read the same time.
--unsafe-synchronous-normal        after the outbox has set and checked `synchronous=FULL` (the product refuses
                                   anything else), the writer connection is switched to `synchronous=NORMAL`.
                                   Only for showing that the power-cut trial notices what NORMAL loses; nothing in
                                   the product can turn this on.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from bridge import logs
from bridge.app import create_app
from bridge.cli import serve_app
from bridge.config import load_settings
from bridge.mapping import load_mappings
from bridge.outbox import sqlite as sqlite_outbox


class SharedScaledClock:
    """Clock time = `origin` + (wall time − `origin`) × `scale`: every process given the same two numbers reads
    the same clock (to within the wall clock's agreement with itself)."""

    def __init__(self, scale: float, origin: float) -> None:
        self.scale = scale
        self.origin = origin

    def now(self) -> float:
        return self.origin + (time.time() - self.origin) * self.scale


def _downgrade_to_normal() -> None:
    checked = sqlite_outbox.apply_pragmas

    async def apply_then_downgrade(conn: Any, pragmas: tuple[str, ...], *, writer: bool) -> None:
        await checked(conn, pragmas, writer=writer)
        if writer:
            await conn.execute_fetchall("PRAGMA synchronous=NORMAL")
            rows = await conn.execute_fetchall("PRAGMA synchronous")
            assert rows[0][0] == 1, rows

    sqlite_outbox.apply_pragmas = apply_then_downgrade  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.faults.serve")
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--clock-scale", type=float)
    parser.add_argument("--clock-origin", type=float)
    parser.add_argument("--unsafe-synchronous-normal", action="store_true")
    args = parser.parse_args()
    if args.unsafe_synchronous_normal:
        _downgrade_to_normal()
    settings = load_settings(args.config, os.environ)
    logs.configure(args.log_level, "text" if settings.log_format == "text" else "json", logs.secret_values(settings))
    clock = SharedScaledClock(args.clock_scale, args.clock_origin) if args.clock_scale else None
    app = create_app(settings, mappings=load_mappings(settings.mappings_dir), clock=clock)
    serve_app(app, settings, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
