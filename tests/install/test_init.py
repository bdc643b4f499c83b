"""`bridge init` writes a starter config from the registries that `bridge check` explains and then accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_settings, unset_variables
from bridge.destinations import destination_types
from bridge.init import write_starter
from bridge.providers import provider_types

#: values whose format a type checks at start-up (the starter's comments say so to the user)
FORMATTED = {
    "ADYEN_WEBHOOK_SECRET": "ab" * 32,  # an HMAC key in hex
    "SERVOKI_SITE": "shop.example.com",
    "ZENOVAY_URL": "https://example.invalid/e/abc123",  # the tracking endpoint …/e/<code>
    "APPLE_APP_STORE_APP_APPLE_ID": "1234567890",  # a number
    "GOOGLE_PLAY_SERVICE_ACCOUNT_EMAIL": "rtdn-push@example.iam.gserviceaccount.com",  # an email address
    "GA4_MEASUREMENT_ID": "G-ABC1234",  # a web stream id
    "META_CAPI_PIXEL_ID": "1234567890",  # a numeric dataset id
    "TIKTOK_PIXEL_CODE": "C4A1B2C3D4E5F6G7H8I9",  # letters and digits
}


def value_for(variable: str) -> str:
    """A plausible value: URLs for *_URL, else a long token (valid as a secret, key, id or header name)."""
    if variable in FORMATTED:
        return FORMATTED[variable]
    if variable.endswith("URL"):
        return f"https://example.invalid/{variable.lower()}"
    return "v" + variable.lower().replace("_", "") + "0123456789abcdef"


@pytest.mark.parametrize("provider", provider_types())
def test_every_provider_type_gets_a_config_that_loads(tmp_path: Path, provider: str) -> None:
    made = write_starter(tmp_path / "bridge.yaml", [provider], ["http"], force=False)
    assert (tmp_path / "mappings" / f"{provider}.yaml").is_file()
    unset = unset_variables(tmp_path / "bridge.yaml", {})
    named = [str(e).split("environment variable ")[1].split(" ")[0] for e in unset]
    assert named == made.variables
    settings = load_settings(tmp_path / "bridge.yaml", {v: value_for(v) for v in made.variables})
    assert list(settings.sources) == [provider] and settings.sources[provider].provider == provider


@pytest.mark.parametrize("kind", destination_types())
def test_every_destination_type_gets_a_config_that_loads(tmp_path: Path, kind: str) -> None:
    made = write_starter(tmp_path / "bridge.yaml", ["stripe"], [kind], force=False)
    text = (tmp_path / "bridge.yaml").read_text()
    for variable in made.variables:
        assert "${" + variable + "}" in text
    settings = load_settings(tmp_path / "bridge.yaml", {v: value_for(v) for v in made.variables})
    assert settings.destinations[kind].type == kind


def test_init_then_check_names_each_secret_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith(("STRIPE_", "CONVULTRA_", "BRIDGE_")):
            monkeypatch.delenv(name)
    config = tmp_path / "bridge.yaml"
    assert main(["init", "--source", "stripe", "--destination", "convultra", "--output", str(config)]) == 0
    capsys.readouterr()
    assert main(["init", "--source", "stripe", "--output", str(config)]) == 2  # never overwrites silently
    assert "--force" in capsys.readouterr().err

    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    for variable in ("BRIDGE_OPS_TOKEN", "STRIPE_WEBHOOK_SECRET", "CONVULTRA_URL", "CONVULTRA_API_KEY"):
        assert f"environment variable {variable} is not set" in err
        assert f"{config}:" in err  # located: file:line:column
    for variable in ("BRIDGE_OPS_TOKEN", "STRIPE_WEBHOOK_SECRET", "CONVULTRA_URL", "CONVULTRA_API_KEY"):
        monkeypatch.setenv(variable, value_for(variable))
    assert main(["check", "--config", str(config)]) == 0
    assert "1 source(s), 1 destination(s)" in capsys.readouterr().out
    assert main(["init", "--source", "stirpe", "--output", str(tmp_path / "other.yaml")]) == 2
    assert "did you mean 'stripe'" in capsys.readouterr().err
