"""`bridge outbox …` and `bridge replay` from the shell, against the running service over HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.sinks.server import serve
from tests.harness import running_bridge, stripe_case

DESTINATIONS = {"capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]}}


async def run_cli(*args: str) -> int:
    return await asyncio.to_thread(main, list(args))


async def test_outbox_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        assert (await bridge.post_stripe(stripe_case("checkout.session.completed"))).status_code == 200
        async with serve(bridge.app, lifespan="off") as url:
            common = ["--config", str(tmp_path / "bridge.yaml"), "--url", url]
            assert await run_cli("outbox", "status", *common) == 0
            status = json.loads(capsys.readouterr().out)
            assert status["destinations"]["capture"]["pending"] == 1

            assert await run_cli("outbox", "list", *common, "--status", "pending") == 0
            [row] = json.loads(capsys.readouterr().out)["deliveries"]
            assert await run_cli("outbox", "show", str(row["id"]), *common) == 0
            assert json.loads(capsys.readouterr().out)["event"]["name"] == "purchase"

            assert await run_cli("outbox", "retry", *common, "--status", "dead") == 0
            assert json.loads(capsys.readouterr().out) == {"retried": 0}

            assert await run_cli("replay", "1", "--dry-run", *common) == 0
            report = json.loads(capsys.readouterr().out)
            assert report["dry_run"] and report["deliveries"][0]["action"] == "skip (pending)"

            assert await run_cli("outbox", "status", *common, "--token", "wrong-token-0123456789") == 1
            assert "401" in capsys.readouterr().err
