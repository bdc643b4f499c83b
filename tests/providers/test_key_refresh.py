"""Refresh on an unknown key (keys.RemoteKeys.get_containing) and its use by Google Play: a key Google has just
rotated in is accepted after one refetch, while any number of made-up key ids cost at most one fetch per
refresh interval. Fetches are counted through the injected fetcher; time comes from the `now` argument."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import ManualClock
from bridge.errors import SignatureError
from bridge.providers.base import OptionError, SourceSettings
from bridge.providers.google_play import GOOGLE_CERTS_URL, GooglePlayProvider
from bridge.providers.keys import RemoteKeys, UrlRule
from tests.harness import running_bridge
from tests.providers.billing_cases import GOOGLE_OPTIONS
from tests.providers.cases import NOW, fixture
from tests.providers.signing_billing import google_fetcher, google_token

URL = "https://keys.example/set"
PUSH = fixture("google_play/SUBSCRIPTION_PURCHASED.json")

# -- RemoteKeys ----------------------------------------------------------------------------------------------


class Publisher:
    """A key set endpoint: serves `published` (comma-separated) and counts fetches; can be gated or failing."""

    def __init__(self, *names: str) -> None:
        self.published = list(names)
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self, url: str) -> bytes:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("down")
        return ",".join(self.published).encode()


def key_set(publisher: Publisher, refresh_interval: float = 60.0) -> RemoteKeys[frozenset[str]]:
    return RemoteKeys(
        rule=UrlRule("KEY-SET", re.compile(re.escape(URL))),
        load=lambda data: frozenset(data.decode().split(",")),
        fetch=publisher,
        ttl=900.0,
        failure_ttl=30.0,
        refresh_interval=refresh_interval,
    )


async def lookup(keys: RemoteKeys[frozenset[str]], kid: str, now: float) -> bool:
    return kid in await keys.get_containing(URL, now, lambda found: kid in found)


async def test_a_missing_key_is_refetched_once_the_interval_has_passed() -> None:
    publisher = Publisher("k1")
    keys = key_set(publisher)
    assert await lookup(keys, "k1", NOW)
    publisher.published.append("k2")  # rotated in right after the first fetch
    assert not await lookup(keys, "k2", NOW + 30)  # the set is 30 s old: no refetch yet
    assert publisher.calls == 1
    assert await lookup(keys, "k2", NOW + 60)  # one refetch, and the new key is there
    assert publisher.calls == 2
    assert await lookup(keys, "k2", NOW + 61) and await lookup(keys, "k1", NOW + 61)  # cached now
    assert publisher.calls == 2


async def test_made_up_keys_cost_at_most_one_fetch_per_interval() -> None:
    publisher = Publisher("k1")
    keys = key_set(publisher, refresh_interval=60.0)
    assert await lookup(keys, "k1", NOW)
    for step in range(600):  # ten minutes of forged key ids, one every second (within the 15-minute ttl)
        assert not await lookup(keys, f"forged-{step}", NOW + step)
    assert publisher.calls == 1 + 9  # the first load, then one refetch per 60 s past the first minute


async def test_concurrent_misses_share_one_refetch() -> None:
    publisher = Publisher("k1")
    keys = key_set(publisher)
    assert await lookup(keys, "k1", NOW)
    publisher.gate = asyncio.Event()
    publisher.published.append("k2")
    waiting = [asyncio.ensure_future(lookup(keys, f"forged-{n}", NOW + 120)) for n in range(50)]
    waiting.append(asyncio.ensure_future(lookup(keys, "k2", NOW + 120)))
    for _ in range(50):
        await asyncio.sleep(0)
    publisher.gate.set()
    assert await asyncio.gather(*waiting) == [False] * 50 + [True]
    assert publisher.calls == 2


async def test_a_failed_refresh_keeps_the_cached_set_and_is_not_retried_within_the_interval() -> None:
    publisher = Publisher("k1")
    keys = key_set(publisher)
    assert await lookup(keys, "k1", NOW)
    publisher.fail = True
    with pytest.raises(SignatureError, match="KEY-SET"):
        await lookup(keys, "forged", NOW + 100)
    assert await lookup(keys, "k1", NOW + 101)  # the cached set still serves the keys it has
    assert not await lookup(keys, "forged", NOW + 110)  # tried 10 s ago: no fetch
    assert not await lookup(keys, "forged", NOW + 140)  # the failure is forgotten, but it was 40 s ago
    assert publisher.calls == 2
    publisher.fail = False
    publisher.published.append("k2")
    assert await lookup(keys, "k2", NOW + 160)
    assert publisher.calls == 3


async def test_the_refresh_respects_the_cap_on_fetches_in_flight() -> None:
    publisher = Publisher("k1")
    keys = key_set(publisher)
    keys.max_concurrent = 0  # no fetch may start (as when other fetches fill the slots)
    with pytest.raises(SignatureError, match="in flight"):
        await lookup(keys, "k1", NOW)
    keys.max_concurrent = 1
    assert await lookup(keys, "k1", NOW)
    keys.max_concurrent = 0
    with pytest.raises(SignatureError, match="in flight"):
        await lookup(keys, "forged", NOW + 100)
    assert publisher.calls == 1


# -- Google Play ---------------------------------------------------------------------------------------------


def token(name: str, now: float, kid: str | None = None) -> dict[str, str]:
    jwt = google_token(
        name,
        now,
        audience=GOOGLE_OPTIONS["audience"],
        email=GOOGLE_OPTIONS["service_account_email"],
        header={"kid": kid} if kid else None,
    )
    return {"authorization": f"Bearer {jwt}"}


def google(published: list[str], calls: list[str], **options: Any) -> GooglePlayProvider:
    settings = SourceSettings("g", "google_play", (), None, options={**GOOGLE_OPTIONS, **options})
    return GooglePlayProvider(settings, fetch_keys=google_fetcher(published, calls))


async def test_google_key_rotated_in_is_accepted_after_the_refresh_not_after_the_cache() -> None:
    published, calls = ["k1"], []
    provider = google(published, calls)
    await provider.verify(PUSH, token("k1", NOW), NOW)
    published.append("k2")  # Google rotates a new key in; pushes signed with it follow
    with pytest.raises(SignatureError, match="kid"):
        await provider.verify(PUSH, token("k2", NOW + 10), NOW + 10)  # the set was fetched 10 s ago
    await provider.verify(PUSH, token("k2", NOW + 60), NOW + 60)  # 1 minute, not the 15 of the cache
    await provider.verify(PUSH, token("k1", NOW + 61), NOW + 61)
    assert calls == [GOOGLE_CERTS_URL, GOOGLE_CERTS_URL]


async def test_google_flood_of_made_up_kids_fetches_once_per_interval() -> None:
    published, calls = ["k1"], []
    provider = google(published, calls, key_refresh_seconds=120)
    await provider.verify(PUSH, token("k1", NOW), NOW)
    for step in range(0, 600, 2):  # 300 forged pushes over ten minutes, each with a fresh made-up kid
        now = NOW + step
        with pytest.raises(SignatureError, match="kid"):
            await provider.verify(PUSH, token("k1", now, kid=f"made-up-{step}"), now)
    assert len(calls) == 1 + 4  # the first load, then one refetch per 120 s after the first interval


async def test_google_made_up_kid_with_wrong_claims_never_fetches() -> None:
    published, calls = ["k1"], []
    provider = google(published, calls)
    await provider.verify(PUSH, token("k1", NOW), NOW)
    later = NOW + 3600
    forged = google_token(
        "k1", later, audience="https://attacker.example/push", email="x@y.iam.gserviceaccount.com", header={"kid": "z"}
    )
    with pytest.raises(SignatureError, match="audience"):
        await provider.verify(PUSH, {"authorization": f"Bearer {forged}"}, later)
    assert calls == [GOOGLE_CERTS_URL]


@pytest.mark.parametrize("value", [0, 5, 901, "60", True, None], ids=["0", "5", "901", "text", "bool", "null"])
def test_google_key_refresh_seconds_option(value: Any) -> None:
    with pytest.raises(OptionError) as raised:
        google(["k1"], [], key_refresh_seconds=value)
    assert raised.value.key == "key_refresh_seconds"


async def test_google_rotation_through_the_app(tmp_path: Path) -> None:
    """The same over POST /webhooks/{source}: 401 while the set is fresh, 200 once it is refreshed."""
    published, calls = ["k1"], []
    clock = ManualClock(NOW)
    source = {"provider": "google_play", **GOOGLE_OPTIONS}
    settings = SourceSettings("gp", "google_play", (), None, options=GOOGLE_OPTIONS)
    provider = GooglePlayProvider(settings, fetch_keys=google_fetcher(published, calls))
    extra = {"sources": {"gp": source}}
    async with running_bridge(
        tmp_path, destinations={}, dispatch=False, extra=extra, clock=clock, providers={"gp": provider}
    ) as b:
        headers = {"content-type": "application/json"}
        assert (await b.client.post("/webhooks/gp", content=PUSH, headers={**headers, **token("k1", NOW)})).is_success
        published.append("k2")
        clock.advance(5)
        refused = await b.client.post("/webhooks/gp", content=PUSH, headers={**headers, **token("k2", clock.now())})
        assert refused.status_code == 401
        clock.advance(60)
        accepted = await b.client.post("/webhooks/gp", content=PUSH, headers={**headers, **token("k2", clock.now())})
        assert accepted.status_code == 200, accepted.text
        assert len(calls) == 2
