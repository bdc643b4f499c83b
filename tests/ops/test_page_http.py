"""The status page over HTTP (in-process): auth and sessions, CSRF, what is masked, and its actions."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.clock import ManualClock
from bridge.ops.auth import COOKIE, SESSION_SECONDS
from bridge.sinks.server import serve
from tests.harness import OPS_TOKEN, Bridge, running_bridge, stripe_case
from tests.ops.support import SwitchSink, until

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def destinations(url: str) -> dict[str, object]:
    return {"collector": {"type": "http", "url": f"{url}/collect", "events": ["*"]}}


async def login(bridge: Bridge) -> str:
    """Log in through the form; returns the CSRF token of the session (the client keeps the cookie)."""
    response = await bridge.client.post("/ops/login", data={"token": OPS_TOKEN, "next": "/ops/"})
    assert response.status_code == 303, response.text
    page = await bridge.client.get("/ops/")
    assert page.status_code == 200
    match = CSRF.search(page.text)
    assert match is not None
    return match.group(1)


async def test_without_auth_every_page_reveals_nothing(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=destinations("http://127.0.0.1:9"), dispatch=False) as bridge:
        await bridge.post_stripe(stripe_case("checkout.session.completed"))
        for path in ["/ops/", "/ops/ui/overview", "/ops/ui/deliveries", "/ops/ui/webhooks", "/ops/ui/webhooks/1",
                     "/ops/ui/mappings"]:
            response = await bridge.client.get(path)
            assert response.status_code == 401, path
            assert "collector" not in response.text and "stripe" not in response.text.lower(), path
            assert 'name="token"' in response.text  # the login form, and nothing else
        bad = await bridge.client.get("/ops/", headers={"Authorization": "Bearer wrong-token-0123456789"})
        assert bad.status_code == 401
        forged = await bridge.client.get("/ops/", headers={"Cookie": f"{COOKIE}=9999999999.abc.0000"})
        assert forged.status_code == 401
        refused = await bridge.client.post("/ops/login", data={"token": "wrong-token-0123456789"})
        assert refused.status_code == 401 and COOKIE not in refused.headers.get("set-cookie", "")


async def test_bearer_works_and_login_sets_a_strict_expiring_cookie(tmp_path: Path) -> None:
    clock = ManualClock(1_750_000_000.0)
    async with running_bridge(
        tmp_path, destinations=destinations("http://127.0.0.1:9"), dispatch=False, clock=clock
    ) as bridge:
        bearer = await bridge.ops("GET", "/ops/")
        assert bearer.status_code == 200 and "collector" in bearer.text
        response = await bridge.client.post("/ops/login", data={"token": OPS_TOKEN, "next": "/ops/ui/mappings"})
        assert response.status_code == 303 and response.headers["location"] == "/ops/ui/mappings"
        cookie = response.headers["set-cookie"].lower()
        for attribute in ("httponly", "samesite=strict", "path=/ops", f"max-age={SESSION_SECONDS}"):
            assert attribute in cookie
        assert (await bridge.client.get("/ops/ui/mappings")).status_code == 200
        clock.advance(SESSION_SECONDS - 1)
        assert (await bridge.client.get("/ops/")).status_code == 200
        clock.advance(2)  # the cookie's own signed expiry, whatever the browser keeps
        assert (await bridge.client.get("/ops/")).status_code == 401
        # an open redirect through ?next is refused
        again = await bridge.client.post("/ops/login", data={"token": OPS_TOKEN, "next": "//evil.example/"})
        assert again.headers["location"] == "/ops/"


async def test_actions_need_the_sessions_csrf_token(tmp_path: Path) -> None:
    sink = SwitchSink(400)
    async with serve(sink.app) as url, running_bridge(tmp_path, destinations=destinations(url)) as bridge:
        await bridge.post_stripe(stripe_case("checkout.session.completed"))

        async def dead() -> bool:
            return any(d["status"] == "dead" for d in await bridge.deliveries())

        await until(dead, what="the delivery to die")
        [row] = await bridge.deliveries(status="dead")
        csrf = await login(bridge)
        missing = await bridge.client.post("/ops/ui/deliveries/retry", data={"ids": str(row["id"])})
        wrong = await bridge.client.post("/ops/ui/deliveries/retry", data={"ids": str(row["id"]), "csrf": "x" * 64})
        assert missing.status_code == 403 and wrong.status_code == 403
        assert [d["status"] for d in await bridge.deliveries()] == ["dead"]

        sink.status = 200
        ok = await bridge.client.post(
            "/ops/ui/deliveries/retry", data={"ids": str(row["id"]), "csrf": csrf, "back": "/ops/ui/deliveries"}
        )
        assert ok.status_code == 303 and "1+of+1+retried" in ok.headers["location"]

        async def delivered() -> bool:
            return [d["status"] for d in await bridge.deliveries()] == ["delivered"]

        await until(delivered, what="the retried delivery to arrive")
        assert len(sink.accepted) == 1
        page = await bridge.client.get("/ops/ui/deliveries")
        assert "<td>400</td>" in page.text and 'data-status="delivered"' in page.text  # the failed attempt stays
        assert "field value rejected" in page.text  # ... with its response excerpt

        logout = await bridge.client.post("/ops/logout", data={"csrf": csrf})
        assert logout.status_code == 303
        assert (await bridge.client.get("/ops/")).status_code == 401


async def test_webhook_detail_masks_signatures_and_personal_data(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=destinations("http://127.0.0.1:9"), dispatch=False) as bridge:
        body = stripe_case("checkout.session.completed")
        await bridge.post_stripe(body)
        page = await bridge.ops("GET", "/ops/ui/webhooks/1")
        assert page.status_code == 200
        signature = bridge.state.settings.sources["stripe"].secrets[0]
        assert signature not in page.text
        assert "stripe-signature" in page.text and "t=" not in page.text.split("stripe-signature")[1][:200]
        emails = set(re.findall(rb"[\w.+-]+@[\w-]+\.[\w.]+", body))
        assert emails, "the fixture carries an email address"
        for email in emails:
            assert email.decode() not in page.text
        revealed = await bridge.ops("GET", "/ops/ui/webhooks/1?reveal=1")
        assert all(email.decode() in revealed.text for email in emails)


async def test_replay_dry_run_then_confirm(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=destinations("http://127.0.0.1:9"), dispatch=False) as bridge:
        await bridge.post_stripe(stripe_case("checkout.session.completed"))
        csrf = await login(bridge)
        dry = await bridge.client.post("/ops/ui/webhooks/1/replay", data={"csrf": csrf, "force": "1"})
        assert dry.status_code == 200 and "Replay dry run" in dry.text and 'id="confirm-replay"' in dry.text
        assert "skip (pending)" in dry.text  # force resets only delivered or dead deliveries
        before = await bridge.deliveries()
        confirmed = await bridge.client.post("/ops/ui/webhooks/1/replay", data={"csrf": csrf, "confirm": "1"})
        assert confirmed.status_code == 200 and 'id="replay-result"' in confirmed.text
        assert [d["id"] for d in await bridge.deliveries()] == [d["id"] for d in before]


async def test_page_assets_are_served_by_the_bridge(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=destinations("http://127.0.0.1:9"), dispatch=False) as bridge:
        page = await bridge.ops("GET", "/ops/")
        assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
        assert assets and all(a.startswith("/ops/") for a in assets), assets
        for asset in [a for a in assets if a.startswith("/ops/static/")]:
            response = await bridge.client.get(asset)
            assert response.status_code == 200 and response.content
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert (await bridge.client.get("/ops/static/..%2Fpage.py")).status_code == 404
        assert (await bridge.client.get("/ops/static/nothing.css")).status_code == 404


async def test_mappings_page_shows_hashes_and_reload_errors(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=destinations("http://127.0.0.1:9"), dispatch=False) as bridge:
        page = await bridge.ops("GET", "/ops/ui/mappings")
        assert page.status_code == 200
        mappings = bridge.state.mappings
        assert mappings is not None
        assert mappings.hashes["stripe"] in page.text
