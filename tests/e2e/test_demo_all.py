"""`bridge demo --all`: the seed destinations and the seven analytics and ad platforms, every delivery settled,
no request refused by a strict sink."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_all_delivers_to_every_platform() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--all"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo ok" in done.stdout
    for name in ("ga4", "meta", "segment", "posthog", "mixpanel", "amplitude", "tiktok"):
        assert f"   {name} (" in done.stdout and f"   {name} (0 accepted" not in done.stdout, name
    assert "REFUSED" not in done.stdout
    assert "POST /v25.0/1234567890/events → 200: Purchase pi_1PgafyB7WZ01zgkWSjxsAJo3 10.99 USD" in done.stdout
    assert (
        "POST /open_api/v1.3/event/track/ → 200: CompletePayment pi_1PgafyB7WZ01zgkWSjxsAJo3 10.99 USD" in done.stdout
    )
