"""`bridge serve`'s HTTP protocol (bridge/server.py) over a real socket: each response leaves in one write, and
keep-alive, streaming bodies and `Connection: close` behave exactly as with uvicorn's own protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bridge.app import create_app
from bridge.config import load_settings
from bridge.server import HttpProtocol
from tests.harness import stripe_case, stripe_headers, write_config


class CountingTransport:
    """The socket's transport, counting the writes that reach it."""

    def __init__(self, transport: asyncio.Transport, writes: list[int]) -> None:
        self.transport = transport
        self.writes = writes
        writes.append(0)
        self.index = len(writes) - 1

    def write(self, data: bytes) -> None:
        self.writes[self.index] += 1
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def counted(base: type[HttpToolsProtocol], writes: list[int]) -> type[HttpToolsProtocol]:
    class Counted(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(CountingTransport(transport, writes))

    return Counted


@asynccontextmanager
async def serving(app: ASGIApp, protocol: type[HttpToolsProtocol]) -> AsyncIterator[int]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=protocol, lifespan="on", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[bytes, bytes]:
    """Send one request on an open connection; (head, body) of the response, read by its framing."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    if b"transfer-encoding: chunked" in lines:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return head, body
            body += chunk[:-2]
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
    return head, await reader.readexactly(length)


def webhook_request(body: bytes, *, close: bool = False) -> bytes:
    headers = stripe_headers(body)
    lines = [b"POST /webhooks/stripe HTTP/1.1", b"Host: test", f"Content-Length: {len(body)}".encode()]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def checkout(index: int) -> bytes:
    event = orjson.loads(stripe_case("checkout.session.completed"))
    event["id"] = f"evt_protocol_{index}"
    event["data"]["object"]["payment_intent"] = f"pi_protocol_{index}"
    return orjson.dumps(event)


async def post_webhooks(tmp_path: Path, protocol: type[HttpToolsProtocol], count: int) -> list[tuple[bytes, bytes]]:
    app = create_app(load_settings(write_config(tmp_path, destinations={}), {}), reload_interval=None)
    async with serving(app, protocol) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return [await exchange(reader, writer, webhook_request(checkout(i))) for i in range(count)]
        finally:
            writer.close()


async def test_every_webhook_answer_leaves_in_one_write(tmp_path: Path) -> None:
    writes: list[int] = []
    answers = await post_webhooks(tmp_path, counted(HttpProtocol, writes), 5)
    for head, body in answers:
        assert head.startswith(b"HTTP/1.1 200 ")
        assert orjson.loads(body)["status"] == "accepted"
    assert writes == [5]  # one connection (kept alive), one write per response


async def test_uvicorns_own_protocol_writes_twice_per_answer(tmp_path: Path) -> None:
    """The cost the protocol removes: the same exchange with uvicorn's httptools protocol."""
    writes: list[int] = []
    await post_webhooks(tmp_path, counted(HttpToolsProtocol, writes), 5)
    assert writes == [10]


def streaming_app() -> Starlette:
    async def stream(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for index in range(3):
                yield f"part {index};".encode()
                await asyncio.sleep(0)

        return StreamingResponse(parts(), media_type="text/plain")

    async def plain(request: Request) -> Response:
        return Response((await request.body()).upper(), media_type="text/plain")

    return Starlette(routes=[Route("/stream", stream), Route("/plain", plain, methods=["POST"])])


async def test_streaming_keep_alive_and_close_behave_as_before() -> None:
    requests: list[Callable[[], bytes]] = [
        lambda: b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n",
        lambda: b"POST /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
        lambda: b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n",
        lambda: b"POST /plain HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbye",
    ]
    seen: dict[str, list[tuple[bytes, bytes]]] = {}
    for name, protocol in (("uvicorn", HttpToolsProtocol), ("bridge", HttpProtocol)):
        async with serving(streaming_app(), protocol) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            answers = [await exchange(reader, writer, make()) for make in requests]
            assert await reader.read() == b""  # closed by the server after the `Connection: close` answer
            writer.close()
        seen[name] = [(head.split(b"\r\n")[0], body) for head, body in answers]
    assert seen["bridge"] == seen["uvicorn"]
    streamed = b"part 0;part 1;part 2;"
    assert [body for _, body in seen["bridge"]] == [streamed, b"HELLO", streamed, b"BYE"]
