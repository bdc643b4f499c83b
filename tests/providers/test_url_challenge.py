"""GET on a webhook URL, through the real app: Braintree's URL verification challenge is answered with the
official vector; hostile challenges are a 400; every other provider's source answers 405; nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.clock import ManualClock
from tests.harness import running_bridge
from tests.providers.cases import NOW, vector

OFFICIAL = vector("braintree.json")["vectors"][0]  # braintree_python's test_verify_returns_a_correct_challenge_response


def _braintree(public_key: Any, secrets: list[str]) -> dict[str, Any]:
    return {"sources": {"bt": {"provider": "braintree", "secrets": secrets, "public_key": public_key}}}


async def test_braintree_challenge_is_answered_with_the_official_vector(tmp_path: Path) -> None:
    extra = _braintree(OFFICIAL["public_key"], [OFFICIAL["private_key"]])
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra, clock=ManualClock(NOW)) as b:
        response = await b.client.get("/webhooks/bt", params={"bt_challenge": OFFICIAL["challenge"]})
        assert response.status_code == 200
        assert response.text == OFFICIAL["expected_response"]
        assert response.headers["content-type"].startswith("text/plain")
        assert (await b.ops("GET", "/ops/webhooks")).json()["webhooks"] == []


async def test_braintree_challenge_while_rotating_uses_the_first_key_pair(tmp_path: Path) -> None:
    public_keys = [OFFICIAL["public_key"], "previous_public_key"]
    extra = _braintree(public_keys, [OFFICIAL["private_key"], "previous_private_key"])
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra) as b:
        response = await b.client.get(f"/webhooks/bt?bt_challenge={OFFICIAL['challenge']}")
        assert (response.status_code, response.text) == (200, OFFICIAL["expected_response"])


@pytest.mark.parametrize(
    "query",
    [
        "",
        "bt_challenge=",
        "bt_challenge=20F9F8ED05F77439FE955C977E4C8A53",  # upper case: the SDK accepts lower-case hex only
        "bt_challenge=" + "a" * 19,
        "bt_challenge=" + "a" * 33,
        "bt_challenge=" + "a" * 5000,
        "bt_challenge=not-hex-at-all-not-hex-at-all",
        "bt_challenge=20f9f8ed05f77439fe955c977e4c8a53%0A",
        "bt_challenge=20f9f8ed05f77439fe955c977e4c8a53&bt_challenge=20f9f8ed05f77439fe955c977e4c8a53",
        "bt_challenge=20f9f8ed05f77439fe955c977e4c8a53&other=1",
        "challenge=20f9f8ed05f77439fe955c977e4c8a53",
        "bt_challenge",
        "bt_challenge=%ff%fe",
        "bt_payload=PG5vdGlmaWNhdGlvbj4=&bt_signature=x",
    ],
    ids=[
        "empty",
        "empty-value",
        "upper-case",
        "19-chars",
        "33-chars",
        "huge",
        "not-hex",
        "trailing-newline",
        "repeated",
        "extra-parameter",
        "other-name",
        "no-equals",
        "not-utf8",
        "a-webhook-in-the-query",
    ],
)
async def test_braintree_challenge_refuses_anything_but_a_short_hex_token(tmp_path: Path, query: str) -> None:
    extra = _braintree(OFFICIAL["public_key"], [OFFICIAL["private_key"]])
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra) as b:
        response = await b.client.get(f"/webhooks/bt?{query}")
        assert response.status_code == 400, response.text
        assert "Braintree verification challenge" in response.json()["error"]
        assert OFFICIAL["public_key"] not in response.text


async def test_other_methods_and_other_providers_answer_405_and_unknown_sources_404(tmp_path: Path) -> None:
    extra = _braintree(OFFICIAL["public_key"], [OFFICIAL["private_key"]])
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra) as b:
        stripe = await b.client.get(f"/webhooks/stripe?bt_challenge={OFFICIAL['challenge']}")
        assert stripe.status_code == 405
        assert stripe.headers["allow"] == "POST"
        for method in ("PUT", "DELETE", "PATCH"):
            other = await b.client.request(method, "/webhooks/bt")
            assert other.status_code == 405
            assert other.headers["allow"] == "GET, POST"
        assert (await b.client.get(f"/webhooks/nope?bt_challenge={OFFICIAL['challenge']}")).status_code == 404
        assert (await b.client.get("/webhooks/bt/more")).status_code == 404
        assert (await b.ops("GET", "/ops/webhooks")).json()["webhooks"] == []
