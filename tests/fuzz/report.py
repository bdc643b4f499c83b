"""What a fuzz run found: each broken property as a `Failure` with its reproducer, and the run's figures."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Failure:
    prop: str  # no-5xx | bounded | refused=none | dispatching | answer
    what: str  # what happened (status, exception, time)
    request: str  # FuzzInput.describe()
    body: bytes
    headers: dict[str, bytes]

    @property
    def key(self) -> str:
        """Failures with the same key are one finding."""
        return f"{self.prop}: {generalize(self.what)}"

    def reproducer(self, limit: int = 300) -> str:
        body = self.body if len(self.body) <= limit else self.body[:limit] + b"..."
        headers = {k: v if len(v) <= 120 else v[:120] + b"..." for k, v in self.headers.items()}
        return (
            f"[{self.prop}] {self.what}\n  request: {self.request}\n  body ({len(self.body)} bytes): {body!r}\n"
            f"  headers: {headers!r}"
        )


def generalize(text: str) -> str:
    text = re.sub(r"/webhooks/\S+", "/webhooks/<source>", text)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:160]


@dataclass
class Stats:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)
    sentinels: int = 0
    cut_off: int = 0  # requests refused before their body was read, the answer lost to the connection reset
    restarts: int = 0  # fresh apps after a memory or storage bound was passed
    failures: list[Failure] = field(default_factory=list)
    crashes: Counter[str] = field(default_factory=Counter)  # errors the app logged while answering 2xx
    slowest: list[tuple[float, str]] = field(default_factory=list)  # the five slowest answers

    def note_time(self, seconds: float, what: str) -> None:
        self.slowest = sorted([*self.slowest, (seconds, what)], reverse=True)[:5]

    def distinct(self) -> dict[str, list[Failure]]:
        found: dict[str, list[Failure]] = {}
        for failure in self.failures:
            found.setdefault(failure.key, []).append(failure)
        return found

    def report(self) -> str:
        lines = []
        for key, group in sorted(self.distinct().items()):
            smallest = min(group, key=lambda f: len(f.body))
            lines.append(f"{len(group)}x {key}\n{smallest.reproducer()}")
        return "\n\n".join(lines)
