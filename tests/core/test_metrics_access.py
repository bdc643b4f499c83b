"""GET /metrics names every source and destination: it needs the ops token unless ops.public_metrics is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import OPS_TOKEN, running_bridge

DESTINATIONS = {"capture": {"type": "http", "url": "http://127.0.0.1:9/x"}}


@pytest.mark.parametrize(
    ("ops", "headers", "status"),
    [
        ({"token": OPS_TOKEN}, {}, 401),
        ({"token": OPS_TOKEN}, {"Authorization": "Bearer wrong-token-0123456789"}, 401),
        ({"token": OPS_TOKEN}, {"Authorization": f"Bearer {OPS_TOKEN}"}, 200),
        ({"token": OPS_TOKEN, "public_metrics": True}, {}, 200),
        ({"token": None}, {}, 403),  # no token configured: off, not open
        ({"token": None, "public_metrics": True}, {}, 200),
    ],
)
async def test_metrics_need_the_ops_token_unless_public(
    tmp_path: Path, ops: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False, extra={"ops": ops}) as bridge:
        response = await bridge.client.get("/metrics", headers=headers)
        assert response.status_code == status, response.text
        if status == 200:
            assert 'destination="capture"' in response.text
        else:
            assert "capture" not in response.text and "stripe" not in response.text
        assert (await bridge.client.get("/healthz")).status_code == 200  # health stays open for probes


async def test_public_metrics_must_be_a_boolean(tmp_path: Path) -> None:
    from bridge.config import load_settings
    from bridge.errors import ConfigError
    from tests.harness import write_config

    path = write_config(tmp_path, destinations=DESTINATIONS, extra={"ops": {"public_metrics": "yes"}})
    with pytest.raises(ConfigError, match="'public_metrics' must be true or false"):
        load_settings(path, {})
