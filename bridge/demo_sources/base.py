"""What every demo source is made of: the `DemoSource` record, the shipped samples and their headers, freshly
generated secrets, and the signers most providers share (an HMAC of the raw body in one header)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge import shipped
from bridge.mapping.golden import case_body, case_names

if TYPE_CHECKING:
    from bridge.config import Settings
    from bridge.providers.base import Provider

#: how a sender signs the body of one sample (case, body) at `now`: the body to post (some schemes sign inside
#: it) and the headers
Signer = Callable[[str, bytes, float], tuple[bytes, dict[str, str]]]
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class DemoSource:
    """What the demo needs for one provider: its `sources:` entry (secrets as ${ENV} references, `env` their
    values), how its sender signs a body and how a forger would (wrong key), the samples, a line saying what
    the demo changed about them, and for providers verified against keys fetched from the provider the
    provider object built with what the demo generated (`build`)."""

    provider: str
    source: dict[str, Any]
    env: dict[str, str]
    sign: Signer
    forge: Signer
    samples: list[tuple[str, bytes]]
    note: str = ""
    build: Callable[[Settings], Provider] | None = field(default=None)

    def providers(self, settings: Settings) -> dict[str, Provider] | None:
        return {self.provider: self.build(settings)} if self.build is not None else None


def segment(data: bytes) -> str:
    """base64url without padding (a JWS segment)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def digest(key: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    """HMAC of `message` under `key` (a str is its UTF-8 bytes)."""
    return hmac.new(key.encode() if isinstance(key, str) else key, message, getattr(hashlib, algorithm)).digest()


def encoded(value: bytes, encoding: str) -> str:
    return value.hex() if encoding == "hex" else base64.b64encode(value).decode()


def samples_of(provider: str) -> list[tuple[str, bytes]]:
    """(case, body) of every golden case shipped for `provider`."""
    directory = shipped.samples_dir() / provider
    return [(case, case_body(directory, case)) for case in case_names(directory)]


def headers_of(provider: str, case: str) -> dict[str, str]:
    """The request headers of a shipped case (`<case>.headers.json`), {} when it has none."""
    path = shipped.samples_dir() / provider / f"{case}.headers.json"
    headers: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
    return headers


def options_of(provider: str) -> dict[str, Any]:
    """The source options the golden cases of `provider` are built with (`_options.json`), {} when none."""
    path = shipped.samples_dir() / provider / "_options.json"
    options: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return options


def own_ids(values: list[str]) -> tuple[list[str], bool]:
    """`values` with each repeated one made distinct (`<value>-2`, …): two samples that share a delivery id are
    different deliveries in the demo, not a retry. Also whether any was changed."""
    seen: dict[str, int] = {}
    out = []
    for value in values:
        seen[value] = seen.get(value, 0) + 1
        out.append(value if seen[value] == 1 else f"{value}-{seen[value]}")
    return out, out != values


@dataclass(frozen=True)
class Secret:
    """A secret generated for one run, under the ${ENV} name the demo's bridge.yaml refers to it by, and the
    forger's wrong one."""

    provider: str
    value: str
    forged: str

    @classmethod
    def new(cls, provider: str, value: str | None = None, forged: str | None = None) -> Secret:
        value = value if value is not None else secrets.token_hex(24)
        return cls(provider, value, forged if forged is not None else "forged-" + value)

    @property
    def variable(self) -> str:
        return f"{self.provider.upper()}_DEMO_SECRET"

    @property
    def env(self) -> dict[str, str]:
        return {self.variable: self.value}

    def source(self, **options: Any) -> dict[str, Any]:
        return {"provider": self.provider, "secrets": ["${" + self.variable + "}"], **options}


def body_hmac(
    header: str,
    encoding: str,
    algorithm: str = "sha256",
    content: dict[str, str] = JSON,
    extra: Callable[[str, bytes], dict[str, str]] | None = None,
) -> Callable[[str | bytes], Signer]:
    """The common scheme: `header` carries the HMAC of the raw body, hex or base64. `extra(body)` adds the
    unsigned headers the sender also sends with a sample (a topic, a delivery id)."""

    def signer(key: str | bytes) -> Signer:
        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            more = extra(case, body) if extra is not None else {}
            return body, {**content, **more, header: encoded(digest(key, body, algorithm), encoding)}

        return sign

    return signer


def hmac_source(
    provider: str,
    header: str,
    encoding: str,
    *,
    algorithm: str = "sha256",
    content: dict[str, str] = JSON,
    options: dict[str, Any] | None = None,
    samples: list[tuple[str, bytes]] | None = None,
    extra: Callable[[str, bytes], dict[str, str]] | None = None,
    note: str = "",
) -> DemoSource:
    """A provider signing the raw body with HMAC in one header."""
    secret = Secret.new(provider)
    make = body_hmac(header, encoding, algorithm, content, extra)
    posted = samples if samples is not None else samples_of(provider)
    source = secret.source(**(options or {}))
    return DemoSource(provider, source, secret.env, make(secret.value), make(secret.forged), posted, note)
