"""`bridge demo --source <provider>` posts that provider's samples, signed as it signs them, through the real
bridge to the loopback sinks: every sample is answered 2xx, the forged one 401, and the demo ends ok."""

from __future__ import annotations

import importlib
import re

import pytest

from bridge import shipped
from bridge.cli import build_parser, main
from bridge.demo_sources import DEMO_PROVIDERS, DEMO_SOURCES, demo_source
from bridge.mapping.golden import case_names


def test_the_cli_offers_every_demo_source() -> None:
    parser = build_parser()
    for provider in ("stripe", *DEMO_PROVIDERS):
        assert parser.parse_args(["demo", "--source", provider]).source == provider
    assert parser.parse_args(["demo"]).source == "stripe"
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--source", "chargebee"])


def test_every_provider_with_shipped_samples_has_a_demo_source() -> None:
    shipped_samples = {path.name for path in shipped.samples_dir().iterdir() if path.is_dir()} - {"stripe"}
    assert shipped_samples <= set(DEMO_PROVIDERS)
    assert set(DEMO_PROVIDERS) - shipped_samples == {"recharge"}  # the one demo with a built-in body


def test_the_registry_names_the_module_that_builds_each_source() -> None:
    for family in set(DEMO_SOURCES.values()):
        module = importlib.import_module(f"bridge.demo_sources.{family}")
        assert set(module.SOURCES) == {p for p, f in DEMO_SOURCES.items() if f == family}
    for provider in DEMO_PROVIDERS:
        assert demo_source(provider).provider == provider
    with pytest.raises(KeyError):
        demo_source("chargebee")


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
