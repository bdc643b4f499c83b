"""Test helpers: build destinations from settings and send rendered requests to a fake with aiohttp."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from bridge.destinations.base import Destination, DestinationSettings, HttpRequest


def settings(type_name: str, url: str = "", **kwargs: Any) -> DestinationSettings:
    return DestinationSettings(name=f"test-{type_name}", type=type_name, url=url, **kwargs)


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


async def send(request: HttpRequest) -> Answer:
    """Send `request` exactly as the dispatcher would (no redirects, no extra default headers)."""
    async with (
        aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Content-Type")) as session,
        session.request(
            request.method, request.url, headers=request.headers, data=request.body, allow_redirects=False
        ) as response,
    ):
        return Answer(response.status, dict(response.headers), await response.read())


async def deliver(destination: Destination, events: list[dict[str, Any]]) -> tuple[Answer, Any]:
    """Render, send and classify; returns the answer and the Outcome."""
    answer = await send(destination.render(events))
    return answer, destination.classify(answer.status, answer.headers, answer.body)


def body(request: HttpRequest) -> Any:
    return orjson.loads(request.body)
