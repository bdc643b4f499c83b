"""A minimal HTTP/1.1 keep-alive sink on uvloop that answers 200 and notes when each event arrived (its
`Idempotency-Key`, which the generic HTTP destination sets to the canonical event id). `GET /count` answers the
number of arrivals; on SIGTERM the arrivals are written to FILE as `key<TAB>unix time` lines.

python -m bench._stamp_sink PORT FILE
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import uvloop

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"success":true}'
ARRIVALS: list[tuple[bytes, float]] = []


class StampSink(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = _header_int(head, b"content-length:")
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            if head.startswith(b"get /count"):
                body = str(len(ARRIVALS)).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            ARRIVALS.append((_header(head, b"idempotency-key:"), time.time()))
            self.transport.write(OK)


def _header(head: bytes, name: bytes) -> bytes:
    marker = head.find(name)
    if marker < 0:
        return b""
    end = head.find(b"\r\n", marker)
    return head[marker + len(name) : end if end >= 0 else None].strip()


def _header_int(head: bytes, name: bytes) -> int:
    value = _header(head, name)
    return int(value) if value else 0


async def main(port: int, out: str) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    server = await loop.create_server(StampSink, "127.0.0.1", port, backlog=1024)
    async with server:
        await stopping.wait()
    with open(out, "w") as file:
        file.writelines(f"{key.decode()}\t{at:.6f}\n" for key, at in ARRIVALS)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
