"""`bridge preview` shows the exact request each analytics and ad platform would get, secrets masked."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bridge.cli import main
from tests.harness import FIXTURES, write_config

DESTINATIONS = {
    "ga4": {"type": "ga4", "measurement_id": "G-PREVIEW1", "api_secret": "ga4_secret_value"},
    "meta": {"type": "meta_capi", "pixel_id": "1234567890", "access_token": "meta_token_value"},
    "segment": {"type": "segment", "write_key": "segment_key_value"},
    "posthog": {"type": "posthog", "api_key": "phc_posthog_key_value"},
    "mixpanel": {"type": "mixpanel", "project_token": "mixpanel_token_value", "api_secret": "mixpanel_secret"},
    "amplitude": {"type": "amplitude", "api_key": "amplitude_key_value"},
}


def test_preview_lists_every_platform_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, destinations=DESTINATIONS)
    sample = FIXTURES / "stripe" / "checkout.session.completed.browser_ids.json"
    assert main(["preview", "--config", str(config), "--source", "stripe", str(sample), "--format", "json"]) == 0
    out = capsys.readouterr().out
    for secret in ("ga4_secret_value", "meta_token_value", "segment_key_value", "phc_posthog_key_value",
                   "mixpanel_token_value", "mixpanel_secret", "amplitude_key_value"):  # fmt: skip
        assert secret not in out, secret
    [entry] = orjson.loads(out)["events"]
    requests = {r["destination"]: r for r in entry["requests"]}
    assert set(requests) == set(DESTINATIONS)
    # the sample happened in 2024: the ad platforms' age limits say so instead of sending
    assert "Meta accepts events up to 7 days old" in requests["meta"]["error"]
    assert "GA4 accepts events up to 72 h old" in requests["ga4"]["error"]
    assert requests["segment"]["url"] == "https://api.segment.io/v1/batch"
    assert orjson.loads(requests["segment"]["body"])["batch"][0]["messageId"] == "purchase:pi_1PgafyB7WZ01zgkWSjxsAJo3"
    assert requests["posthog"]["url"] == "https://us.i.posthog.com/batch/"
    assert orjson.loads(requests["posthog"]["body"])["api_key"].startswith("****")
    assert requests["mixpanel"]["url"] == "https://api.mixpanel.com/import?strict=1"
    assert requests["amplitude"]["url"] == "https://api2.amplitude.com/2/httpapi"
