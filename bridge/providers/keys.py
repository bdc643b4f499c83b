"""Remote verification keys (PayPal's signing certificate, Google's OIDC key set): one fetcher with a cache.

A provider whose scheme names its key by URL in the request (PayPal's `PAYPAL-CERT-URL`) must never let a
stranger choose what the bridge fetches or how often. `RemoteKeys` enforces, for every such provider:

- an allowlist: the URL must fully match the provider's pattern, both as sent and after percent-decoding
  (`%2e%2e` is `..`), or it is refused before any network access;
- a cache of loaded keys (per URL, `ttl` seconds, at most `max_entries`), so a provider's usual key is
  fetched once;
- a failure cache: a URL that could not be fetched or loaded is refused for `failure_ttl` seconds without a new
  attempt (bounded too);
- single flight and a concurrency cap: concurrent requests for one URL share one fetch, and at most
  `max_concurrent` different URLs are fetched at once; past that a request is refused at once (401, the
  provider retries) instead of queueing behind a stranger's URLs;
- refresh on a miss, rate-limited (`get_containing`): a key set that lacks the key a request names (a key the
  provider has just rotated in) is fetched again before its ttl, but only when the cached copy was loaded at
  least `refresh_interval` seconds ago. Every request naming an unknown key (a stranger can make up any
  number of them) thus costs at most one fetch per `refresh_interval`, shared by all of them; the failure cache
  and the concurrency cap apply to that fetch as to any other, and a failed refresh keeps the cached set.

The fetch function and the time are injected (`fetch`, and `now` on every call from the bridge's clock), so
tests run without network or sleeping. The default fetch is `fetch_https`: TLS verified, no redirects, bounded
time and size. Every failure is a SignatureError.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote

import aiohttp

from bridge.errors import SignatureError

K = TypeVar("K")
Fetch = Callable[[str], Awaitable[bytes]]

MAX_URL_LENGTH = 2048
FETCH_TIMEOUT_SECONDS = 10.0
MAX_KEY_BYTES = 64 * 1024


@dataclass(frozen=True)
class UrlRule:
    """Which URLs may be fetched: `pattern` must fullmatch the URL as sent and after percent-decoding."""

    what: str  # e.g. "PAYPAL-CERT-URL", for messages
    pattern: re.Pattern[str]

    def check(self, url: str) -> str:
        """`url` when allowed; SignatureError otherwise (nothing has been fetched)."""
        if not url or len(url) > MAX_URL_LENGTH or not url.isascii():
            raise SignatureError(f"{self.what} is not an allowed key URL")
        decoded = url
        for _ in range(4):  # repeated encodings (%252e) decode step by step
            step = unquote(decoded)
            if step == decoded:
                break
            decoded = step
        if not (self.pattern.fullmatch(url) and self.pattern.fullmatch(decoded)):
            raise SignatureError(f"{self.what} is not an allowed key URL")
        return url


async def fetch_https(url: str) -> bytes:
    """GET `url` with aiohttp: TLS verified, no redirects, 10 s, at most 64 KiB."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise SignatureError(f"fetching the key answered HTTP {response.status}")
            data = await response.content.read(MAX_KEY_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SignatureError(f"could not fetch the key: {type(exc).__name__}") from None
    if len(data) > MAX_KEY_BYTES:
        raise SignatureError("the key document is larger than 64 KiB")
    return data


@dataclass(frozen=True, slots=True)
class _Entry(Generic[K]):
    value: K
    expires: float
    loaded: float = 0.0  # when the fetch that produced it (or, for a failure, failed) started


class RemoteKeys(Generic[K]):
    """Fetch, load and cache verification keys named by URL; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        rule: UrlRule,
        load: Callable[[bytes], K],
        fetch: Fetch = fetch_https,
        ttl: float = 24 * 3600.0,
        failure_ttl: float = 60.0,
        max_concurrent: int = 4,
        max_entries: int = 64,
        max_failures: int = 1024,
        refresh_interval: float = 60.0,
    ) -> None:
        self.rule = rule
        self.load = load
        self.fetch = fetch
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.max_concurrent = max_concurrent
        self.max_entries = max_entries
        self.max_failures = max_failures
        self.refresh_interval = refresh_interval
        self._keys: OrderedDict[str, _Entry[K]] = OrderedDict()
        self._failures: OrderedDict[str, _Entry[str]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[K]] = {}

    def allowed(self, url: str) -> str:
        """`url` when the rule allows it; SignatureError otherwise. Never fetches."""
        return self.rule.check(url)

    async def get(self, url: str, now: float) -> K:
        """The key for `url`: cached, or fetched once (shared by concurrent callers). SignatureError when the URL is
        not allowed, failed recently, too many fetches are in flight, or fetching/loading fails."""
        key = self.rule.check(url)
        cached = self._keys.get(key)
        if cached is not None and cached.expires > now:
            return cached.value
        return await self._load(key, now)

    async def get_containing(self, url: str, now: float, contains: Callable[[K], bool]) -> K:
        """Like `get`, but when the cached value does not satisfy `contains` (a key set without the requested key)
        and was fetched (or last tried) at least `refresh_interval` seconds ago, it is fetched again, once for all
        concurrent callers. The result may still not satisfy `contains`: the caller refuses the request then."""
        value = await self.get(url, now)
        if contains(value):
            return value
        key = self.rule.check(url)
        cached, failed = self._keys.get(key), self._failures.get(key)
        last_attempt = max(cached.loaded if cached else 0.0, failed.loaded if failed else 0.0)
        if now - last_attempt < self.refresh_interval and key not in self._pending:
            return value  # fetched (or tried) a moment ago: what it lacks is not published (yet)
        return await self._load(key, now)

    async def _load(self, key: str, now: float) -> K:
        """The fetch of `key` in flight, or a new one: refused while a recent failure is remembered or when
        `max_concurrent` other fetches are in flight."""
        pending = self._pending.get(key)
        if pending is None:
            failed = self._failures.get(key)
            if failed is not None and failed.expires > now:
                raise SignatureError(f"{self.rule.what}: {failed.value} (not retried for {self.failure_ttl:.0f}s)")
            if len(self._pending) >= self.max_concurrent:
                raise SignatureError(f"{self.rule.what}: {self.max_concurrent} key fetches already in flight")
            pending = asyncio.ensure_future(self._fetch(key, now))
            pending.add_done_callback(lambda done: self._finished(key, done))
            self._pending[key] = pending
        return await asyncio.shield(pending)  # a caller that goes away does not cancel the others' fetch

    def _finished(self, key: str, done: asyncio.Future[K]) -> None:
        self._pending.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here, so an unawaited failure is never logged as "never retrieved"

    async def _fetch(self, key: str, now: float) -> K:
        try:
            value = self.load(await self.fetch(key))
        except SignatureError as exc:
            self._remember_failure(key, str(exc), now)
            raise
        except Exception as exc:  # an injected fetcher's or loader's own error: the key is unavailable
            reason = f"could not fetch the key: {type(exc).__name__}"
            self._remember_failure(key, reason, now)
            raise SignatureError(f"{self.rule.what}: {reason}") from None
        self._keys[key] = _Entry(value, now + self.ttl, now)
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_entries:
            self._keys.popitem(last=False)
        self._failures.pop(key, None)
        return value

    def _remember_failure(self, key: str, reason: str, now: float) -> None:
        self._failures[key] = _Entry(reason, now + self.failure_ttl, now)
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_failures:
            self._failures.popitem(last=False)
