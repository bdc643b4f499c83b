"""Compact JWS (RFC 7515) read strictly, for the providers whose webhooks are signed tokens (Apple's App Store
notifications, Google's Pub/Sub push OIDC tokens). Only what those two need, with `cryptography`:

- `split(token)`: the three base64url segments, unpadded, decoded without any lenience; the header a JSON object
  with a string `alg`, at most `max_length` characters in all; a `crit` header (extensions we would have to
  understand) is refused;
- `verify_es256` / `verify_rs256`: the signature over `header.payload` with a given public key;
- `claims(token)`: the payload as a JSON object, decoded WITHOUT checking anything (for `parse()`, which runs only
  after `verify()` accepted the same bytes).

Every failure of `split` and the verifiers is a SignatureError.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bridge.errors import PayloadError, SignatureError

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
DEFAULT_MAX_LENGTH = 64 * 1024


@dataclass(frozen=True, slots=True)
class Jws:
    header: dict[str, Any]
    payload: bytes  # decoded payload bytes (JSON text)
    signature: bytes
    signing_input: bytes  # b"<header segment>.<payload segment>"


def b64url(segment: str, what: str) -> bytes:
    """Unpadded base64url, strictly (no padding, no whitespace, no other alphabet, no non-canonical tail bits)."""
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise SignatureError(f"{what} is not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not unpadded base64url") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != segment:
        raise SignatureError(f"{what} is not canonical base64url")
    return data


def _object(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise SignatureError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise SignatureError(f"{what} is not a JSON object")
    return value


def split(token: str, *, max_length: int = DEFAULT_MAX_LENGTH, what: str = "token") -> Jws:
    """The parts of a compact JWS; SignatureError when it is not exactly one well-formed JWS."""
    if not isinstance(token, str) or not token or len(token) > max_length or not token.isascii():
        raise SignatureError(f"{what} is not a compact JWS of at most {max_length} characters")
    segments = token.split(".")
    if len(segments) != 3 or not all(segments):
        raise SignatureError(f"{what} is not a compact JWS (three non-empty segments)")
    header = _object(b64url(segments[0], f"{what} header"), f"{what} header")
    if not isinstance(header.get("alg"), str):
        raise SignatureError(f"{what} header has no alg")
    if "crit" in header:
        raise SignatureError(f"{what} header has critical extensions")
    payload = b64url(segments[1], f"{what} payload")
    signature = b64url(segments[2], f"{what} signature")
    return Jws(header, payload, signature, f"{segments[0]}.{segments[1]}".encode())


def payload_object(jws: Jws, what: str = "token") -> dict[str, Any]:
    return _object(jws.payload, f"{what} payload")


def verify_es256(key: ec.EllipticCurvePublicKey, jws: Jws) -> None:
    """ES256: ECDSA P-256 with SHA-256, signature = 32-byte r || 32-byte s (RFC 7518 §3.4)."""
    if not isinstance(key.curve, ec.SECP256R1) or len(jws.signature) != 64:
        raise SignatureError("not an ES256 signature for a P-256 key")
    r = int.from_bytes(jws.signature[:32], "big")
    s = int.from_bytes(jws.signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), jws.signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("the ES256 signature does not verify") from None


def verify_rs256(key: rsa.RSAPublicKey, jws: Jws) -> None:
    """RS256: RSASSA-PKCS1-v1_5 with SHA-256."""
    if key.key_size < 2048 or len(jws.signature) != (key.key_size + 7) // 8:
        raise SignatureError("not an RS256 signature for this key")
    try:
        key.verify(jws.signature, jws.signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError("the RS256 signature does not verify") from None


def claims(token: str, what: str = "token") -> dict[str, Any]:
    """The payload of a JWS that was already verified, as a JSON object; PayloadError if it is not one."""
    try:
        return payload_object(split(token, what=what), what)
    except SignatureError as exc:
        raise PayloadError(str(exc)) from None
