"""Logging: one line per record on stderr, as JSON (default) or as `key=value` text (`log: {format: text}`).

Every line carries what it concerns: a call passes `extra={...}` (webhook_ids, delivery_ids, ...), and
`bound(source=..., destination=...)` puts fields on every line logged inside the block, in this task and the
tasks it starts (a context variable), so the ingest path and each dispatcher lane tag their lines once.

Nothing secret reaches the output: a `Redactor` filter on the handler replaces every configured secret (source
secrets, destination credentials and headers, the ops token) wherever it appears, drops fields named like
signature headers or credentials, and masks email addresses and phone numbers (PII) in every value. Values go
through orjson (JSON) or repr-style quoting (text), so CR/LF or ANSI escapes inside a field cannot forge a line.
Never pass raw bodies to the logger all the same.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import orjson

if TYPE_CHECKING:
    from bridge.config import Settings

LogFormat = Literal["json", "text"]
FORMATS: tuple[LogFormat, ...] = ("json", "text")

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("bridge_log_context", default=None)

#: field names whose values are never logged (signature headers, credentials)
SENSITIVE_FIELD = re.compile(
    r"(signature|hmac|secret|password|passwd|token|_key$|^key$|authorization|cookie|credential)", re.I
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"\+\d[\d ()-]{6,}\d")
MASK = "***"


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add `fields` to every line logged inside the block (and in tasks started inside it)."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: Any) -> None:
    """Add `fields` to every later line of the current task (for a long-lived task such as a dispatcher lane)."""
    _CONTEXT.set({**(_CONTEXT.get() or {}), **fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = dict(getattr(record, "_context", None) or {})
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    return out


class Redactor(logging.Filter):
    """Scrubs secrets, credential-named fields and PII from every record before it is formatted."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # longest first, so a secret containing another is masked whole; very short values would mask noise
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _PHONE.sub(MASK, _EMAIL.sub(MASK, text))

    def clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: MASK if SENSITIVE_FIELD.search(str(k)) else self.clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.clean(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.scrub(str(value))

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        record._context = self.clean(_CONTEXT.get() or {})
        for key in list(record.__dict__):
            if key in _STANDARD or key.startswith("_"):
                continue
            value = record.__dict__[key]
            record.__dict__[key] = MASK if SENSITIVE_FIELD.search(key) else self.clean(value)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and re.fullmatch(r"[\w.:/@+-]+", value) else orjson.dumps(value).decode()
    return orjson.dumps(value, default=str).decode()


class TextFormatter(logging.Formatter):
    """`2025-01-01T12:00:00.123Z info bridge.http webhook source=stripe ack=accepted ...` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        message = record.getMessage()
        parts = [stamp, record.levelname.lower(), record.name, _text_value(message) if "\n" in message else message]
        parts += [f"{key}={_text_value(value)}" for key, value in _fields(record).items()]
        if record.exc_info:
            parts.append(f"exc={_text_value(self.formatException(record.exc_info))}")
        elif record.exc_text:
            parts.append(f"exc={_text_value(record.exc_text)}")
        line = " ".join(parts)
        return line.replace("\r", "\\r").replace("\n", "\\n")


def configure(level: str = "INFO", fmt: LogFormat = "json", secrets: Iterable[str] = ()) -> None:
    """Send every log line (bridge's and uvicorn's) to stderr in `fmt`, with `secrets` masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def secret_values(settings: Settings) -> list[str]:
    """Every configured value that must never be logged: the ops token, each source's secrets and
    credential options, each destination's credential options and header values."""
    found: list[str] = [settings.ops_token or ""]

    def collect(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)

    for source in settings.sources.values():
        collect(source.secrets)
        for key, value in source.options.items():
            if SENSITIVE_FIELD.search(key):
                collect(value)
    for destination in settings.destinations.values():
        collect(list(destination.headers.values()))
        for key, value in destination.options.items():
            if SENSITIVE_FIELD.search(key):
                collect(value)
    return [value for value in found if value]
