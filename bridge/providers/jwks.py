"""Remote JSON Web Key Sets (Google's OIDC signing keys for Pub/Sub push tokens): fetched, cached, bounded.

A token names its key by `kid`; a stranger can send any `kid`, so fetching must never be theirs to drive:

- only allowlisted URLs are fetched (the provider's fixed key-set URL; checked before any network access);
- a loaded key set is cached for `ttl` seconds; a `kid` missing from a fresh set triggers at most one refetch
  per `refresh_interval` (Google rotates keys by publishing the new one before using it);
- a failed fetch or load is remembered for `failure_ttl` seconds: requests meanwhile are refused at once (401,
  the sender retries) without a new attempt;
- single flight and a cap: concurrent requests share one fetch per URL, at most `max_concurrent` URLs are
  fetched at once; past that a request is refused rather than queued.

Fetch and time are injected (`fetch`, and `now` on every call from the bridge's clock), so tests need no
network and no sleeping. The default fetch GETs over TLS (verified), without redirects, within 10 s and
64 KiB. Every failure is a SignatureError. The shape (`fetch`, `ttl`, `failure_ttl`, `max_concurrent`,
`get(url, now)`) is that of the bridge's remote-key fetcher for certificate URLs, so both can share one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.errors import SignatureError

Fetch = Callable[[str], Awaitable[bytes]]
FETCH_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_KEYS = 32


async def fetch_https(url: str) -> bytes:
    """GET `url` with aiohttp: TLS verified, no redirects, 10 s, at most 64 KiB."""
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise SignatureError(f"fetching the key set answered HTTP {response.status}")
            data = await response.content.read(MAX_DOCUMENT_BYTES + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SignatureError(f"could not fetch the key set: {type(exc).__name__}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise SignatureError("the key set is larger than 64 KiB")
    return data


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise ValueError(f"{what} is not base64url text")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not base64url") from None
    return int.from_bytes(raw, "big")


def load_rsa_jwks(document: bytes) -> dict[str, rsa.RSAPublicKey]:
    """kid -> RSA public key of the RS256 signing keys in a JWKS document (others are skipped). ValueError when
    the document is not a key set or holds no usable key."""
    try:
        parsed = orjson.loads(document)
    except orjson.JSONDecodeError:
        raise ValueError("the key set is not JSON") from None
    keys = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(keys, list):
        raise ValueError("the key set has no keys list")
    found: dict[str, rsa.RSAPublicKey] = {}
    for entry in keys[:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", "RS256") != "RS256" or not isinstance(entry.get("kid"), str):
            continue
        key = rsa.RSAPublicNumbers(_uint(entry.get("e"), "e"), _uint(entry.get("n"), "n")).public_key()
        if key.key_size >= 2048:
            found[entry["kid"]] = key
    if not found:
        raise ValueError("the key set holds no RS256 signing key")
    return found


@dataclass(slots=True)
class _Cached:
    keys: dict[str, rsa.RSAPublicKey]
    expires: float
    fetched: float


class JwksCache:
    """The RSA keys of allowlisted JWKS URLs; see the module docstring for the rules."""

    def __init__(
        self,
        *,
        allowed: frozenset[str],
        fetch: Fetch = fetch_https,
        ttl: float = 3600.0,
        refresh_interval: float = 60.0,
        failure_ttl: float = 60.0,
        max_concurrent: int = 2,
    ) -> None:
        self.allowed = allowed
        self.fetch = fetch
        self.ttl = ttl
        self.refresh_interval = refresh_interval
        self.failure_ttl = failure_ttl
        self.max_concurrent = max_concurrent
        self.fetches = 0  # attempted fetches, for operators and tests
        self._sets: dict[str, _Cached] = {}
        self._failures: dict[str, tuple[str, float]] = {}
        self._pending: dict[str, asyncio.Future[_Cached]] = {}

    async def key(self, url: str, kid: str, now: float) -> rsa.RSAPublicKey:
        """The key `kid` of the set at `url`, fetching the set when it is not cached, expired, or (at most once per
        refresh_interval) lacks `kid`. SignatureError when the key cannot be had."""
        if url not in self.allowed:
            raise SignatureError("the key set URL is not allowed")
        cached = self._sets.get(url)
        if cached is not None and cached.expires > now:
            if kid in cached.keys:
                return cached.keys[kid]
            if now - cached.fetched < self.refresh_interval:
                raise SignatureError("the token's kid is not in the current key set")
        cached = await self._refresh(url, now)
        key = cached.keys.get(kid)
        if key is None:
            raise SignatureError("the token's kid is not in the key set")
        return key

    async def _refresh(self, url: str, now: float) -> _Cached:
        failed = self._failures.get(url)
        if failed is not None and failed[1] > now:
            raise SignatureError(f"{failed[0]} (not retried for {self.failure_ttl:.0f}s)")
        pending = self._pending.get(url)
        if pending is None:
            if len(self._pending) >= self.max_concurrent:
                raise SignatureError("too many key set fetches in flight")
            pending = asyncio.ensure_future(self._fetch(url, now))
            pending.add_done_callback(lambda done: self._finished(url, done))
            self._pending[url] = pending
        return await asyncio.shield(pending)

    def _finished(self, url: str, done: asyncio.Future[_Cached]) -> None:
        self._pending.pop(url, None)
        if not done.cancelled():
            done.exception()  # retrieved, so a failure nobody awaited is not logged as "never retrieved"

    async def _fetch(self, url: str, now: float) -> _Cached:
        self.fetches += 1
        try:
            keys = load_rsa_jwks(await self.fetch(url))
        except SignatureError as exc:
            self._failures[url] = (str(exc), now + self.failure_ttl)
            raise
        except Exception as exc:  # the injected fetcher's or the loader's own errors: the keys are unavailable
            reason = f"could not load the key set: {type(exc).__name__}"
            self._failures[url] = (reason, now + self.failure_ttl)
            raise SignatureError(reason) from None
        self._failures.pop(url, None)
        cached = _Cached(keys, now + self.ttl, now)
        self._sets[url] = cached
        return cached
