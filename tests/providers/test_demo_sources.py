"""`bridge demo --source <provider>` posts that provider's samples, signed as it signs them, through the real
bridge to the loopback sinks: every sample is answered 2xx, the forged one 401, and the demo ends ok."""

from __future__ import annotations

import re

import pytest

from bridge import shipped
from bridge.cli import build_parser, main
from bridge.demo_sources import DEMO_PROVIDERS
from bridge.mapping.golden import case_names


def test_the_cli_offers_every_demo_source() -> None:
    parser = build_parser()
    for provider in ("stripe", *DEMO_PROVIDERS):
        assert parser.parse_args(["demo", "--source", provider]).source == provider
    assert parser.parse_args(["demo"]).source == "stripe"
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--source", "chargebee"])


@pytest.mark.parametrize("provider", DEMO_PROVIDERS)
def test_demo_posts_the_samples_of(provider: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--source", provider]) == 0
    out = capsys.readouterr().out
    posted = re.findall(r"^   (\S+)\s+(\d{3}) (\S+)", out, re.M)
    statuses = {status for _, status, _ in posted}
    samples = case_names(shipped.samples_dir() / provider) if provider != "recharge" else ["subscription/created"]
    assert [case for case, *_ in posted if case != "(forged"] == [s[:50] for s in samples]
    assert statuses <= {"200", "401"}
    assert "(forged signature)                                 401 refused, nothing stored" in out
    assert "demo ok" in out
