"""Who may see and act on the status page: the ops token, as a Bearer header or through a session cookie.

- `Authorization: Bearer <ops token>` works on every page (scripts, curl), compared in constant time.
- The login form takes the token once and sets a session cookie: `<expires>.<nonce>.<signature>`, signed with
  HMAC-SHA256 under a key derived from the ops token (rotating the token ends every session; replicas that
  share the token accept each other's cookies). It is HttpOnly, SameSite=Strict, Path=/ops, Secure on https,
  and expires after `SESSION_SECONDS` by its own signed time as well as by Max-Age.
- Every state-changing page action is a POST carrying a CSRF token bound to the session (HMAC of its nonce).
  A Bearer request needs none: a browser never attaches that header on its own.

Time comes from the app's clock, so expiry is tested without waiting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "bridge_ops_session"
#: a session lasts one working shift
SESSION_SECONDS = 8 * 3600
_KEY_LABEL = b"bridge ops session cookie v1"


@dataclass(frozen=True)
class Viewer:
    """An authenticated request: how it proved itself, and the CSRF token its forms must carry."""

    via: Literal["bearer", "cookie"]
    csrf: str
    expires_at: float | None = None


class OpsAuth:
    def __init__(self, token: str | None) -> None:
        self.token = token
        self._key = hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest() if token else b""

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def token_matches(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.strip().encode(), (self.token or "").encode())

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def _csrf(self, nonce: str) -> str:
        return self._sign(f"csrf:{nonce}")

    def new_session(self, now: float) -> tuple[str, Viewer]:
        """A fresh cookie value and the viewer it stands for."""
        expires = int(now) + SESSION_SECONDS
        nonce = base64.urlsafe_b64encode(secrets.token_bytes(18)).decode().rstrip("=")
        payload = f"{expires}.{nonce}"
        return f"{payload}.{self._sign(payload)}", Viewer("cookie", self._csrf(nonce), float(expires))

    def viewer(self, request: Request, now: float) -> Viewer | None:
        """Who is asking, or None when neither a valid Bearer token nor a live session cookie came along."""
        if not self.enabled:
            return None
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(value):
            return Viewer("bearer", self._csrf("bearer"))
        cookie = request.cookies.get(COOKIE, "")
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
            return None
        expires, nonce, signature = parts
        if not hmac.compare_digest(signature.encode(), self._sign(f"{expires}.{nonce}").encode()):
            return None
        if float(expires) <= now:
            return None
        return Viewer("cookie", self._csrf(nonce), float(expires))

    @staticmethod
    def csrf_ok(viewer: Viewer, given: str | None) -> bool:
        """Whether a POST from `viewer` carries its CSRF token (Bearer requests need none)."""
        if viewer.via == "bearer":
            return True
        return given is not None and hmac.compare_digest(given.encode(), viewer.csrf.encode())

    @staticmethod
    def set_cookie(response: Response, value: str, request: Request) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_SECONDS,
            path="/ops",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    @staticmethod
    def clear_cookie(response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE, path="/ops", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
