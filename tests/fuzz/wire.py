"""The fuzz run's plumbing: a raw HTTP/1.1 client (any header byte can be sent), a destination that takes
anything, and recorders for the exception behind a 500 and for the errors the bridge logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ErrorLog(logging.Handler):
    """Collects ERROR records of the bridge's loggers (a mapping crash, a storage error) while fuzzing."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        detail = ""
        if record.exc_info and record.exc_info[1] is not None:
            detail = f": {type(record.exc_info[1]).__name__}: {str(record.exc_info[1])[:120]}"
        self.records.append(f"{record.name} {record.getMessage()}{detail}")


class Recorder:
    """ASGI wrapper keeping the exception behind a 500 (Starlette answers 500 and re-raises it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.errors: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            self.errors.append(f"{type(exc).__name__}: {str(exc)[:160]} (at {where})")


class CatchAll:
    """A destination that takes anything: reads the body, answers 200."""

    def __init__(self) -> None:
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        self.requests += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})


#: Answer.status of a request the server stopped reading (connection reset while the client was sending)
CUT_OFF = -2


@dataclass
class Answer:
    status: int  # 0: the connection closed without an answer
    body: bytes
    seconds: float


async def http_post(port: int, path: str, body: bytes, headers: dict[str, bytes], timeout: float) -> Answer:
    """POST over a fresh loopback connection with exactly these header bytes; the answer and its time."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = [f"POST {path} HTTP/1.1".encode(), b"host: 127.0.0.1", b"content-length: %d" % len(body)]
        head += [name.encode("latin-1") + b": " + value for name, value in headers.items()]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        try:
            status_line = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            return Answer(-1, b"", time.perf_counter() - started)
        if not status_line:
            return Answer(0, b"", time.perf_counter() - started)
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        answer = await reader.readexactly(length) if length else b""
        return Answer(int(status_line.split()[1]), answer, time.perf_counter() - started)
    except ConnectionResetError:
        # the server closed with part of the request unread: it answered before reading the body (413, or 400
        # for a header the HTTP parser refuses) and the reset discarded that answer
        return Answer(CUT_OFF, b"", time.perf_counter() - started)
    except (ConnectionError, asyncio.IncompleteReadError):
        return Answer(0, b"", time.perf_counter() - started)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
