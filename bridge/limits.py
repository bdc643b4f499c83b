"""Bounds on the work one webhook can cause, checked where each becomes known.

- at parse time (after the signature verified, before the provider parses): the JSON nesting depth and integers
  that do not fit 64 bits. A body past them is malformed (400, nothing stored): orjson would read a huge integer
  as a lossy float and refuses to write objects nested past 255 levels, so such a body could only fail later.
- after parse: the number of provider events in one webhook (400).
- after mapping: the size of each canonical event as JSON. An event too big, or one that cannot be written as
  JSON at all, is a mapping failure with the reason (stored, replayable), never a 5xx.

Both checks on the raw body are linear scans in C (regex and bytes.replace), so they cost little next to parsing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson

from bridge.errors import PayloadError

#: orjson writes at most 255 levels; canonical events nest a few levels above the values a mapping copies in
MAX_DEPTH_CEILING = 200
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson reads as an exact integer


@dataclass(frozen=True)
class Limits:
    """The `limits:` section of bridge.yaml."""

    #: deepest nesting of objects and arrays in a webhook body (the deepest real payload seen is 11)
    max_depth: int = 64
    #: provider events in one webhook (GoCardless and Adyen batch several)
    max_events_per_webhook: int = 1000
    #: one canonical event written as JSON
    max_event_bytes: int = 256 * 1024


DEFAULT_LIMITS = Limits()

_STRUCTURE = bytes.maketrans(b"{}", b"[]")  # braces count as brackets
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
# An integer literal of 19 or more digits: not part of a fraction or exponent, not followed by one.
_LONG_INT = re.compile(rb"(?<![0-9.eE+\-])-?[0-9]{19,}+(?![.eE])")
_RUNS = re.compile(rb"\[+|\]+")
_PASSES = 8


def check_body(body: bytes, limits: Limits) -> None:
    """Raise PayloadError when a JSON body nests deeper than `limits.max_depth` or holds an integer beyond 64 bits.

    Bodies that are not a JSON object or array (form posts) pass untouched. Invalid JSON may pass too: the
    provider's parser refuses it next. Strings are told apart by their quotes once escaped backslashes and
    escaped quotes are removed; every step is a C-level pass over the bytes.
    """
    if body.lstrip()[:1] not in (b"{", b"["):
        return
    if b"\\" in body:  # left to right, `\\` pairs are exactly the escaped backslashes; then `\"` are escaped quotes
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    if b"0" * 19 in body.translate(_DIGITS_AS_ZERO):  # rare: only then look at the numbers outside strings
        for match in _LONG_INT.finditer(b"".join(body.split(b'"')[::2])):
            digits = match.group()
            if len(digits) > 21 or not _INT_MIN <= int(digits) <= _INT_MAX:
                shown = digits[:24].decode() + ("…" if len(digits) > 24 else "")
                raise PayloadError(f"integer {shown} does not fit 64 bits")
    # Quotes and brackets only. Deleting two adjacent quotes keeps every other byte inside or outside a string, so
    # after that only strings holding brackets still have quotes (rare): drop those strings' contents.
    structure = body.translate(_STRUCTURE, delete=_NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    if nesting_depth(structure, stop_after=limits.max_depth) > limits.max_depth:
        raise PayloadError(f"JSON nested deeper than {limits.max_depth} levels (limits.max_depth)")


def nesting_depth(brackets: bytes, *, stop_after: int) -> int:
    """How deeply `[`/`]` nest in `brackets` (nothing else in it); counting may stop once past `stop_after`.

    A few passes delete the innermost pairs (one level each, at C speed); the depth of the shallower rest is the
    largest running sum of its runs' lengths (openers +, closers −). The worst shape of a 1 MB body costs tens
    of milliseconds.
    """
    if b"[" * (stop_after + 1) in brackets:
        return stop_after + 1  # a run of openers is already too deep (the usual shape of a nesting attack)
    depth = 0
    for _ in range(_PASSES):
        if not brackets:
            return depth
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return depth  # unbalanced: not JSON, the parser says so
        few_leaves = len(shorter) > len(brackets) - len(brackets) // 8
        brackets, depth = shorter, depth + 1
        if few_leaves:
            break  # passes that remove little cost more than walking the runs that are left
    runs = _RUNS.findall(brackets)  # runs alternate: openers, closers, openers, ...
    sizes = list(map(len, runs))
    closers = 1 if runs and runs[0][:1] == b"[" else 0
    sizes[closers::2] = [-size for size in sizes[closers::2]]
    return depth + max(0, max(accumulate(sizes), default=0))


def check_event_count(count: int, limits: Limits) -> None:
    if count > limits.max_events_per_webhook:
        raise PayloadError(
            f"the webhook carries {count} events, more than {limits.max_events_per_webhook} "
            "(limits.max_events_per_webhook)"
        )


class EventTooLarge(ValueError):
    """A canonical event cannot be written as JSON or is bigger than `limits.max_event_bytes`."""


def encode_events(events: Sequence[dict[str, Any]], limits: Limits) -> list[bytes]:
    """Each canonical event as JSON; EventTooLarge names the first that cannot be written or is too big."""
    encoded = []
    for event in events:
        try:
            data = orjson.dumps(event)
        except TypeError as exc:  # nested past orjson's 255 levels, an integer beyond 64 bits, ...
            raise EventTooLarge(f"{event.get('name')} event cannot be written as JSON: {exc}") from None
        if len(data) > limits.max_event_bytes:
            raise EventTooLarge(
                f"{event.get('name')} event is {len(data)} bytes as JSON, more than {limits.max_event_bytes} "
                "(limits.max_event_bytes)"
            )
        encoded.append(data)
    return encoded
