"""The HTTP protocol `bridge serve` runs: uvicorn's httptools protocol, with every response sent in one write.

uvicorn writes a response's status line and headers as soon as the app sends `http.response.start`, and the body
in a second write. On a socket each write is a system call, and on loopback or a busy virtual machine also a wake-up
of the reader; for the ingest path's small answers the second write cost ~12 % of the server's CPU per webhook
(bench.ingest, docs/performance.md). `CoalescingTransport` holds what is written during one pass of the event
loop and hands it to the real transport as one write at the start of the next, so a response whose body follows
its headers in the same pass (every non-streaming response) leaves in one write. Order is kept, `close()` sends
what is held first, and nothing is written once the transport is closing. Everything else goes to the real
transport unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport wrapper joining the writes of one event-loop pass into one `write` of the real transport."""

    __slots__ = ("_held", "_loop", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        held, self._held = self._held, []
        if held and not self.transport.is_closing():
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    # the calls uvicorn makes per request, spelled out (the rest goes through __getattr__)
    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        self.transport.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `CoalescingTransport` (pass the class as uvicorn's `http`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
