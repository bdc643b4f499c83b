"""The remote key fetcher (providers/keys.py) and PayPal's transmission log: bounded in time and memory."""

from __future__ import annotations

import asyncio
import re

import pytest

from bridge.errors import SignatureError
from bridge.providers.keys import RemoteKeys, UrlRule
from bridge.providers.paypal import TransmissionLog

RULE = UrlRule("KEY-URL", re.compile(r"https://keys\.example/k/[a-z0-9]{1,16}"))


class Fetcher:
    def __init__(self, gate: asyncio.Event | None = None, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.gate = gate
        self.fail = fail

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("down")
        return url.rsplit("/", 1)[1].encode()


def keys(fetcher: Fetcher, **limits: int) -> RemoteKeys[str]:
    return RemoteKeys(rule=RULE, load=bytes.decode, fetch=fetcher, ttl=100.0, failure_ttl=10.0, **limits)


@pytest.mark.parametrize(
    "url",
    [
        "https://keys.example/k/%61",  # an allowed character, encoded: still not the allowed spelling
        "https://keys.example/k/a%2f..%2fsecret",
        "https://keys.example/k/a/../b",
        "https://keys.example/k/A",
        "http://keys.example/k/a",
        "https://keys.example.evil/k/a",
        "https://keys.example/k/" + "a" * 17,
        "https://keys.example/k/é",
        "",
    ],
)
async def test_urls_outside_the_rule_are_refused_before_any_fetch(url: str) -> None:
    fetcher = Fetcher()
    with pytest.raises(SignatureError, match="KEY-URL"):
        await keys(fetcher).get(url, 0.0)
    assert fetcher.calls == []


async def test_keys_are_cached_until_their_ttl_and_the_cache_is_bounded() -> None:
    fetcher = Fetcher()
    cache = keys(fetcher, max_entries=2)
    assert await cache.get("https://keys.example/k/a", 0.0) == "a"
    assert await cache.get("https://keys.example/k/a", 99.0) == "a"
    assert len(fetcher.calls) == 1
    assert await cache.get("https://keys.example/k/a", 100.0) == "a"  # expired: fetched again
    assert len(fetcher.calls) == 2
    for name in ("b", "c"):
        await cache.get(f"https://keys.example/k/{name}", 100.0)
    await cache.get("https://keys.example/k/a", 100.0)  # pushed out by b and c
    assert len(fetcher.calls) == 5


async def test_failures_are_cached_and_bounded() -> None:
    fetcher = Fetcher(fail=True)
    cache = keys(fetcher, max_failures=2)
    for _ in range(3):
        with pytest.raises(SignatureError):
            await cache.get("https://keys.example/k/a", 0.0)
    assert len(fetcher.calls) == 1
    with pytest.raises(SignatureError):
        await cache.get("https://keys.example/k/a", 10.0)  # failure_ttl over: one new attempt
    assert len(fetcher.calls) == 2
    for name in ("b", "c"):
        with pytest.raises(SignatureError):
            await cache.get(f"https://keys.example/k/{name}", 10.0)
    with pytest.raises(SignatureError):
        await cache.get("https://keys.example/k/a", 10.0)  # forgotten (bounded), so tried again
    assert len(fetcher.calls) == 5


async def test_one_fetch_per_url_and_a_cap_on_urls_in_flight() -> None:
    gate = asyncio.Event()
    fetcher = Fetcher(gate)
    cache = keys(fetcher, max_concurrent=2)
    same = [asyncio.ensure_future(cache.get("https://keys.example/k/a", 0.0)) for _ in range(5)]
    other = asyncio.ensure_future(cache.get("https://keys.example/k/b", 0.0))
    for _ in range(100):  # let the callers reach their fetch
        await asyncio.sleep(0)
    assert fetcher.calls == ["https://keys.example/k/a", "https://keys.example/k/b"]
    with pytest.raises(SignatureError, match="in flight"):
        await cache.get("https://keys.example/k/c", 0.0)
    same[0].cancel()  # one caller going away does not cancel the fetch the others wait for
    gate.set()
    assert await asyncio.gather(*same[1:], other) == ["a"] * 4 + ["b"]
    assert await cache.get("https://keys.example/k/c", 0.0) == "c"  # the slots are free again


def test_transmission_log_binds_a_body_until_the_window_closes_and_is_bounded() -> None:
    log = TransmissionLog(max_entries=3)
    log.record("t1", b"body-1", until=100.0, now=0.0)
    log.check("t1", b"body-1", 50.0)
    with pytest.raises(SignatureError, match="another body"):
        log.check("t1", b"forged", 50.0)
    log.check("t1", b"forged", 100.5)  # the window has closed: the request is refused as stale anyway
    for n in range(2, 6):
        log.record(f"t{n}", b"x", until=1000.0, now=1.0)
    assert len(log) == 3  # bounded: the oldest go first
    with pytest.raises(SignatureError):
        log.record("t5", b"y", until=1000.0, now=2.0)
