"""Hostile values for the fuzz generator (tests/fuzz/strategies.py): JSON values as exact bytes (`Frag`), edits
of a whole body, and hostile header values. Each value carries a short label for reproducers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

# -- JSON with hostile leaves ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frag:
    """A hostile JSON value, as the exact bytes to put on the wire (may be invalid JSON on purpose)."""

    raw: bytes
    label: str

    def __repr__(self) -> str:
        return self.label


@dataclass(frozen=True, eq=False)
class DupKey:
    """An extra occurrence of `key` in an object (identity-hashed, so it can sit beside the real key)."""

    key: str


def encode(value: Any) -> bytes:
    """Serialize a tree of JSON values, `Frag` leaves (verbatim) and `DupKey` keys."""
    if isinstance(value, Frag):
        return value.raw
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            name = key.key if isinstance(key, DupKey) else key
            parts.append(orjson.dumps(str(name)) + b":" + encode(item))
        return b"{" + b",".join(parts) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(encode(item) for item in value) + b"]"
    return orjson.dumps(value)


# -- hostile JSON values ----------------------------------------------------------------------------------


def deep(depth: int, kind: str) -> Frag:
    if kind == "array":
        return Frag(b"[" * depth + b"]" * depth, f"[]*{depth}")
    if kind == "object":
        return Frag(b'{"a":' * depth + b"1" + b"}" * depth, f"{{a:}}*{depth}")
    return Frag(b'[{"a":' * (depth // 2) + b"null" + b"}]" * (depth // 2), f"[{{a:}}]*{depth // 2}")


def _string(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")


DEPTHS = [64, 200, 254, 255, 256, 300, 512, 1000, 1023, 1024, 1025, 5000, 100_000]
#: deep values that a JSON parser with a depth limit of 1024 still accepts (more likely drawn)
PARSEABLE_DEPTHS = [200, 254, 255, 256, 300, 512, 1000, 1022]
INT_TEXTS = [
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "-18446744073709551616",
    "99999999999999999999",
    "1" + "0" * 38,
    "1" + "0" * 40,
    "1" + "0" * 400,
    "9" * 4301,
    "-" + "9" * 5000,
    "1" * 100_000,
]
FLOAT_TEXTS = [
    "1e308",
    "1.7976931348623157e308",
    "1e309",
    "-1e309",
    "1e400",
    "1e-400",
    "5e-324",
    "-0.0",
    "-0",
    "0.1e1",
    "1E+2",
    "1e20000000",
    "1e-20000000",
    "1.00000000000000000000000000000000000000001",
    "123456789012345678901234567890.123456789",
    "0." + "0" * 1000 + "1",
    "1" + "0" * 500 + ".5",
]
NONFINITE = ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e", "01", "+1", ".5", "1.", "0x10", "1_000"]
NUMERIC_STRINGS = [
    "1e20000000",
    "-1e20000000",
    "1e-20000000",
    "1e309",
    "1e31",
    "1e-31",
    "NaN",
    "Infinity",
    "-Infinity",
    "sNaN",
    "-0",
    "0x10",
    "1_000",
    " 12.50 ",
    "12.34.56",
    "١٢٣",
    "１２３",
    "²",
    "9" * 41,
    "99999999999999999999999999999999999999999.99",
    "0." + "0" * 60 + "1",
    "1" * 5000,
    "99999999999999999999",
    "-99999999999999999999",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "10000-01-01T00:00:00Z",
    "2024-02-30T25:61:61Z",
    "",
    "   ",
]
CONTROL_STRINGS = [
    "a\x00b",
    "line1\r\nX-Injected: 1",
    "tab\there",
    "\x01\x02\x03\x07\x08\x0b\x0c\x0e\x1f\x7f",
    "\u2028\u2029",
    "\ufeffbom",
    "\u202etxt.exe",
    "\U0001f4a9" * 10,
    "é" * 100,
    "\x85\xa0\xad",
    "Mozilla/5.0\x00(evil)",
    "1.2.3.4\r\n5.6.7.8",
]
BAD_UTF8 = [b'"\xff\xfe"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"a\x80b"', b'"\xf4\x90\x80\x80"', b'"\xe2\x82"']
BAD_ESCAPES = [b'"\\ud800"', b'"\\udfff\\ud800"', b'"\\u0000"', b'"\\x41"', b'"\\uZZZZ"', b'"\\"', b'"\\u00"']
WRONG_TYPES = [
    b"null",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1.5",
    b'""',
    b'"x"',
    b"[]",
    b"{}",
    b"[[]]",
    b'[{"":""}]',
    b'{"":{"":[]}}',
    b"[null]",
    b'{"amount":{"value":"1"}}',
]


#: how often each kind is drawn: mostly values a JSON parser accepts, so they reach the provider and the mapping
FRAGMENT_KINDS = (
    ["deep"] * 3 + ["int"] * 2 + ["int_text"] * 2 + ["float"] * 2 + ["numstr"] * 4 + ["control"] * 2 + ["wrong"] * 3
    + ["hugestr", "bigarray", "dupobject", "nonfinite", "badutf8", "escape"]
)  # fmt: skip


@st.composite
def fragments(draw: st.DrawFn) -> Frag:
    """One hostile JSON value."""
    kind = draw(st.sampled_from(FRAGMENT_KINDS))
    if kind == "deep":
        depth = draw(st.sampled_from(PARSEABLE_DEPTHS) | st.sampled_from(DEPTHS))
        return deep(depth, draw(st.sampled_from(["array", "object", "mixed"])))
    if kind == "int":
        text = draw(st.sampled_from(INT_TEXTS))
        return Frag(text.encode(), f"int({len(text)} chars: {text[:24]}{'…' if len(text) > 24 else ''})")
    if kind == "int_text":
        text = draw(st.sampled_from(INT_TEXTS))
        return Frag(_string(text), f"str(int {len(text)} chars: {text[:24]})")
    if kind == "float":
        text = draw(st.sampled_from(FLOAT_TEXTS))
        return Frag(text.encode(), f"num({text[:40]}{'…' if len(text) > 40 else ''})")
    if kind == "nonfinite":
        text = draw(st.sampled_from(NONFINITE))
        return Frag(text.encode(), f"literal({text})")
    if kind == "numstr":
        text = draw(st.sampled_from(NUMERIC_STRINGS))
        return Frag(_string(text), f"str({text[:40]!r}{'…' if len(text) > 40 else ''})")
    if kind == "control":
        text = draw(st.sampled_from(CONTROL_STRINGS) | st.text(max_size=40))
        return Frag(_string(text), f"str({text!r})")
    if kind == "badutf8":
        raw = draw(st.sampled_from(BAD_UTF8))
        return Frag(raw, f"bytes({raw!r})")
    if kind == "escape":
        raw = draw(st.sampled_from(BAD_ESCAPES))
        return Frag(raw, f"escape({raw.decode()})")
    if kind == "wrong":
        raw = draw(st.sampled_from(WRONG_TYPES))
        return Frag(raw, raw.decode())
    if kind == "hugestr":
        size = draw(st.sampled_from([1_000, 10_000, 100_000, 500_000, 1_100_000]))
        char = draw(st.sampled_from(["x", "é", "\\u0000", "\\\\", "€"]))
        text = char * (size // max(1, len(char.encode())))
        return Frag(b'"' + text.encode() + b'"', f"str({char!r}*{size // max(1, len(char.encode()))})")
    if kind == "bigarray":
        size = draw(st.sampled_from([1_000, 10_000, 100_000]))
        item = draw(st.sampled_from([b"0", b"{}", b'"x"', b"[]", b"1e308", b'{"price":"1e999"}']))
        return Frag(b"[" + b",".join([item] * size) + b"]", f"[{item.decode()}]*{size}")
    # an object with duplicate keys of different types
    key = draw(st.sampled_from(["id", "type", "amount", "value", "a"]))
    raw = b'{"%s":1,"%s":{},"%s":"x"}' % (key.encode(), key.encode(), key.encode())
    return Frag(raw, f"dupobj({raw.decode()})")


@dataclass(frozen=True)
class BodyEdit:
    """A change to the serialized body as a whole."""

    kind: str  # wrap | prefix | suffix | truncate | replace
    data: bytes = b""
    count: int = 0

    def __str__(self) -> str:
        if self.kind == "wrap":
            return f"body wrapped in {self.count} arrays"
        if self.kind == "truncate":
            return f"body cut to {self.count} bytes"
        if self.kind == "replace":
            return f"body replaced by {self.data[:60]!r}{'…' if len(self.data) > 60 else ''} ({len(self.data)} bytes)"
        return f"body {self.kind} {self.data[:40]!r}"

    def apply(self, body: bytes) -> bytes:
        if self.kind == "wrap":
            return b"[" * self.count + body + b"]" * self.count
        if self.kind == "prefix":
            return self.data + body
        if self.kind == "suffix":
            return body + self.data
        if self.kind == "truncate":
            return body[: self.count]
        return self.data


@st.composite
def body_edits(draw: st.DrawFn) -> BodyEdit:
    kind = draw(st.sampled_from(["wrap", "prefix", "suffix", "truncate", "replace"]))
    if kind == "wrap":
        return BodyEdit("wrap", count=draw(st.sampled_from(DEPTHS[:-1])))
    if kind == "prefix":
        return BodyEdit("prefix", draw(st.sampled_from([b"\xef\xbb\xbf", b" \n\t", b"\x00", b"\xff", b"[", b"{}"])))
    if kind == "suffix":
        return BodyEdit("suffix", draw(st.sampled_from([b"\x00", b" garbage", b"{}", b"]", b"\n" * 1000, b"\xff"])))
    if kind == "truncate":
        return BodyEdit("truncate", count=draw(st.integers(0, 200)))
    top = [b"", b"null", b"[]", b"{}", b'"x"', b"1", b"1e999", b"NaN", b"[" * 2000, b"\x00" * 10]
    return BodyEdit("replace", draw(st.sampled_from(top) | st.sampled_from(WRONG_TYPES)))


# -- hostile header values ----------------------------------------------------------------------------------

HEADER_VALUES = [
    "",
    " ",
    "99999999999999999999",
    "-99999999999999999999",
    "9" * 400,
    "-1",
    "0",
    "1e309",
    "1e20",
    "nan",
    "inf",
    "-inf",
    "0x7fffffff",
    "١٧٠٠٠٠٠٠٠٠",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "10000-01-01T00:00:00Z",
    "t=99999999999999999999,v1=00",
    "t=-1,v1=00",
    "t=1e10,v1=00",
    "ts=99999999999999999999;h1=00",
    "99999999999999999999999,00",
    "v1,=,v1,",
    "==,,;;",
    "x" * 20_000,
]


def _mangle(value: str, how: str) -> str:
    if how == "digits_huge":
        return re.sub(r"\d+", "99999999999999999999", value)
    if how == "digits_negative":
        return re.sub(r"\d{6,}", lambda m: "-" + m.group(0), value)
    if how == "double":
        return f"{value},{value}"
    if how == "prepend_t":
        return f"t=1,ts=1,{value}"
    if how == "append_old":
        return f"{value},t=1000000000,ts=1000000000"
    if how == "spaces":
        return " , ".join(value.split(","))
    if how == "truncate":
        return value[: len(value) // 2]
    if how == "upper":
        return value.upper()
    return value + "\x00"


@dataclass(frozen=True)
class HeaderEdit:
    name: str
    value: bytes | None  # None: remove the header
    mangle: str = ""  # transform the valid value instead

    def __str__(self) -> str:
        if self.mangle:
            return f"header {self.name}: valid value {self.mangle}"
        if self.value is None:
            return f"header {self.name} removed"
        shown = self.value[:60]
        return f"header {self.name}: {shown!r}{'…' if len(self.value) > 60 else ''} ({len(self.value)} bytes)"

    def apply(self, headers: dict[str, bytes]) -> None:
        if self.mangle:
            if self.name in headers:
                headers[self.name] = _mangle(headers[self.name].decode("latin-1"), self.mangle).encode("latin-1")
        elif self.value is None:
            headers.pop(self.name, None)
        else:
            headers[self.name] = self.value


HEADER_BYTES = st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def header_edits(draw: st.DrawFn, names: tuple[str, ...]) -> HeaderEdit:
    name = draw(st.sampled_from(names))
    how = draw(st.sampled_from(["value", "value", "mangle", "bytes", "remove"]))
    if how == "remove":
        return HeaderEdit(name, None)
    if how == "mangle":
        mangles = ["digits_huge", "digits_negative", "double", "prepend_t", "append_old", "spaces", "truncate"]
        return HeaderEdit(name, b"", draw(st.sampled_from([*mangles, "upper", "nul"])))
    if how == "bytes":
        return HeaderEdit(name, draw(HEADER_BYTES))
    return HeaderEdit(name, draw(st.sampled_from(HEADER_VALUES)).encode("utf-8"))


def header_values() -> st.SearchStrategy[bytes]:
    """A hostile header value: one of HEADER_VALUES or random bytes (without CR/LF)."""
    return st.sampled_from(HEADER_VALUES).map(str.encode) | HEADER_BYTES
