"""Numbers from ops requests (query, path, form or JSON body), range-checked before anything uses them.

Out of range is a ValueError, which every ops route answers with 400; an id too long to exist matches no
route (404). SQLite refuses integers past 64 bits with an OverflowError, and `int()` takes other scripts'
digits and refuses text past 4300 digits, so neither ever sees an unchecked value.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.convertors import Convertor, register_url_convertor

ID_MAX = 2**63 - 1  # row ids, cursors and limits are 64-bit in both outboxes
SECONDS_MAX = 253402300799.0  # Unix seconds of 9999-12-31T23:59:59Z
DAYS_MAX = 36500.0


def whole(value: Any, name: str, default: int | None = None, *, maximum: int | None = None) -> int | None:
    """A whole number from text (ASCII digits) or a JSON integer, within 0 … 2**63 − 1; `maximum` clamps."""
    if value is None or value == "":
        return default
    text = str(value) if type(value) is int else value if isinstance(value, str) else ""
    if not (text.isascii() and text.isdigit()) or len(text.lstrip("0")) > 19 or int(text) > ID_MAX:
        raise ValueError(f"{name} must be a whole number from 0 to {ID_MAX}")
    number = int(text)
    return min(number, maximum) if maximum else number


def number(value: Any, name: str, *, minimum: float, maximum: float) -> float | None:
    """A finite number (text or a JSON number) within [minimum, maximum]; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name} must be a number")
    try:
        result = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name} must be a number") from None
    if not (math.isfinite(result) and minimum <= result <= maximum):
        raise ValueError(f"{name} must be a number from {minimum:g} to {maximum:g}")
    return result


class IdConvertor(Convertor[int]):
    """`{id:id}` in a route: digits that surely fit a 64-bit row id (longer ones match no route: 404)."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())
