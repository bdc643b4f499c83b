"""`bridge validate-destination NAME` against the local GA4 and Meta sinks (never the real services)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.sinks.ga4 import Ga4Fake
from bridge.sinks.meta_capi import MetaCapiFake
from bridge.sinks.server import serve
from tests.harness import write_config


async def run(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_ga4_goes_to_the_validation_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = Ga4Fake("G-VALID123", "ga4_secret")
    async with serve(fake.app) as base:
        destinations = {
            "ga4": {"type": "ga4", "url": base, "measurement_id": "G-VALID123", "api_secret": "ga4_secret"},
            "wrong": {"type": "ga4", "url": base, "measurement_id": "G-OTHER999", "api_secret": "ga4_secret"},
            "segment": {"type": "segment", "url": base, "write_key": "k"},
        }
        config = write_config(tmp_path, destinations=destinations)
        assert await run("validate-destination", "ga4", "--config", str(config)) == 0
        out = capsys.readouterr().out
        assert "/debug/mp/collect?measurement_id=G-VALID123&api_secret=****" in out and "ga4_secret" not in out
        assert '"validationMessages":[]' in out and "ok: HTTP 200" in out
        assert await run("validate-destination", "wrong", "--config", str(config)) == 1
        assert "NOT OK" in capsys.readouterr().out
        assert await run("validate-destination", "segment", "--config", str(config)) == 2
    assert [r["path"] for r in fake.received] == ["/debug/mp/collect", "/debug/mp/collect"]
    assert fake.transactions == {}  # the debug endpoint records nothing


async def test_meta_sends_a_test_event(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = MetaCapiFake("1234567890", "meta_token")
    async with serve(fake.app) as base:
        destinations = {
            "meta": {"type": "meta_capi", "url": base, "pixel_id": "1234567890", "access_token": "meta_token"}
        }
        config = write_config(tmp_path, destinations=destinations)
        assert await run("validate-destination", "meta", "--config", str(config)) == 2  # no test code
        assert "--test-event-code" in capsys.readouterr().err
        assert await run("validate-destination", "meta", "--config", str(config), "--test-event-code", "TEST42") == 0
        out = capsys.readouterr().out
        assert '"test_event_code":"TEST42"' in out and "ok: HTTP 200 (1 events received" in out
    assert len(fake.test_events) == 1 and fake.test_events[0]["event_name"] == "Purchase"
    assert "validate@example.com" not in str(fake.received[0]["body"])  # hashed like every Meta event
