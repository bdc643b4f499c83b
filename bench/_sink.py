"""A minimal HTTP/1.1 keep-alive sink on uvloop that answers 200 to every request (for delivery benchmarks).

    python -m bench._sink PORT [--record]

`GET /__count` answers how many requests it has answered so far (control requests aside). With `--record` it also
notes, for every request whose body holds a marker `pi_e2e_<n>`, the request path, `n` and the arrival time
(`time.monotonic()`: CLOCK_MONOTONIC, the same clock in every process of the machine, so the sender's send times
compare directly); `GET /__arrivals` answers the arrivals noted since the last such request as JSON
`[[path, n, t], ...]` and forgets them.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

import orjson
import uvloop

RESPONSE = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"success":true}'
MARKER = re.compile(rb"pi_e2e_(\d+)")


class Recorder:
    def __init__(self, record: bool) -> None:
        self.record = record
        self.arrivals: list[tuple[str, int, float]] = []
        self.count = 0

    def note(self, path: bytes, body: bytes, now: float) -> None:
        self.count += 1
        if self.record:
            match = MARKER.search(body)
            if match:
                self.arrivals.append((path.decode("latin-1"), int(match.group(1)), now))

    def control(self, path: bytes) -> bytes | None:
        if path == b"/__arrivals":
            body = orjson.dumps(self.arrivals)
            self.arrivals = []
        elif path == b"/__count":
            body = orjson.dumps(self.count)
        else:
            return None
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body


class Sink(asyncio.Protocol):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

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
            length = 0
            marker = head.find(b"content-length:")
            if marker >= 0:
                line_end = head.find(b"\r\n", marker)
                length = int(head[marker + 15 : line_end if line_end >= 0 else None])
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            line = self.buffer[: self.buffer.find(b"\r\n")]
            path = line.split(b" ", 2)[1] if line.count(b" ") >= 2 else b""
            response = self.recorder.control(path) if path.startswith(b"/__") else None
            if response is None:
                response = RESPONSE
                self.recorder.note(path, self.buffer[head_end + 4 : total], time.monotonic())
            self.buffer = self.buffer[total:]
            self.transport.write(response)


async def main(port: int, record: bool) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder(record)
    server = await loop.create_server(lambda: Sink(recorder), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), "--record" in sys.argv[2:]))
