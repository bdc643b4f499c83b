"""The hostile-request generator shared by the fuzz test (tests/fuzz/test_fuzz.py) and its long run
(`python -m bench.fuzz`): hypothesis strategies that describe a request, and `build()` that turns a description
into the exact bytes sent.

A request is one of three kinds, for one of the configured sources (every provider case of
tests/providers/cases.py, which covers all sixteen provider types):

  garbage   unsigned: random bytes or random JSON, with no, random or hostile signature headers
  headers   a real fixture body, validly signed, then one or more headers replaced by hostile values
            (the signature header mangled, timestamps and ids out of range, control characters, huge values)
  signed    a real fixture body with hostile JSON spliced in (deep nesting, huge and exotic numbers,
            NaN/Infinity, duplicate keys, invalid UTF-8, wrong types in the fields the mapping reads, huge
            strings, big arrays), then *validly signed* as the provider's sender would sign it

The seed bodies are the golden fixtures (real provider payloads, see fixtures/PROVIDERS-SOURCES.md). Splice
points favour the fields the provider and its mapping read: every field name used in mappings/<type>.yaml.
Before mutation every id in the seed is made unique per request (`freshen`), so a request is never just a
duplicate of the previous one and its events reach the dispatcher.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jmespath
import orjson
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import strategies as st

from bridge.errors import BridgeError
from tests.fuzz.values import (
    BodyEdit,
    DupKey,
    Frag,
    HeaderEdit,
    body_edits,
    deep,
    encode,
    fragments,
    header_edits,
    header_values,
)
from tests.providers import apple_signing
from tests.providers.cases import CASES, Case
from tests.providers.signing import adyen_item_signature, lower, signed_request

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
MAPPINGS = ROOT / "mappings"

JsonPath = tuple[str | int, ...]


def paths(value: Any, prefix: JsonPath = ()) -> Iterator[JsonPath]:
    """Every path below `value` (not the root), parents first."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):  # the first few elements stand for the rest
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def get(tree: Any, path: JsonPath) -> Any:
    for step in path:
        tree = tree[step]
    return tree


# -- the seeds: real bodies per source ------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    name: str
    doc: Any
    event_type: str | None  # for providers that carry the type in a header (topic, event name)
    all_paths: tuple[JsonPath, ...]
    targeted: tuple[JsonPath, ...]  # paths whose last key the provider or its mapping reads
    lists: tuple[JsonPath, ...]  # paths of non-empty arrays (to grow)


@dataclass(frozen=True)
class Source:
    name: str  # the source name in the fuzz config (the case id)
    case: Case
    seeds: tuple[Seed, ...]

    @property
    def type(self) -> str:
        return self.case.type


#: keys the provider modules themselves read (ids, types, envelopes), beside the mapping's fields
PROVIDER_KEYS = frozenset(
    "id type event_type event event_name meta notificationItems NotificationRequestItem pspReference eventCode "
    "success amount value currency additionalData events resource_type action links data object created "
    "occurred_at payload entity created_at merchant_id".split()
)
_TYPE_HEADERS = {"shopify": "x-shopify-topic", "woocommerce": "x-wc-webhook-topic"}


def _fields_of(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "field":
            yield str(node["value"])
        for child in node.get("children", ()):
            yield from _fields_of(child)


def _expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from _expressions(value)
    elif isinstance(node, str):
        yield node


@cache
def mapping_fields(provider_type: str) -> frozenset[str]:
    """Every field name a JMESPath expression in mappings/<type>.yaml reads."""
    path = MAPPINGS / f"{provider_type}.yaml"
    names: set[str] = set()
    if not path.exists():
        return frozenset()
    for text in _expressions(yaml.safe_load(path.read_text(encoding="utf-8"))):
        try:
            names.update(_fields_of(jmespath.compile(text).parsed))
        except jmespath.exceptions.JMESPathError:
            continue  # a plain word (a name or a description), not an expression
    return frozenset(names)


def _seed(case: Case, name: str, body: bytes, headers: dict[str, str]) -> Seed | None:
    try:
        doc = json.loads(body)
        if case.type == "apple_app_store":  # signed inside the body: mutate the notification, sign it again
            doc = apple_signing.decoded_notification(body)
    except (ValueError, KeyError, IndexError):
        return None  # not JSON (Braintree's form): the source gets garbage only
    if not isinstance(doc, dict | list):
        return None
    event_type = headers.get(_TYPE_HEADERS.get(case.type, ""))
    if case.type == "lemonsqueezy":
        event_type = str((doc.get("meta") or {}).get("event_name", "order_created"))
    if case.type == "generic_hmac" and case.options.get("type_header"):
        event_type = "webhook"  # the type the shipped generic mapping maps
    keys = mapping_fields(case.type) | PROVIDER_KEYS
    every = tuple(paths(doc))
    targeted = tuple(p for p in every if isinstance(p[-1], str) and p[-1] in keys)
    lists = tuple(p for p in every if isinstance(get(doc, p), list) and get(doc, p))
    top = ((),) if isinstance(doc, list) and doc else ()
    return Seed(name, doc, event_type, every, targeted or every, top + lists)


def _seeds(case: Case) -> tuple[Seed, ...]:
    """The golden bodies of the case's provider (for the plain case of a type), then the case's own body;
    the same body under the same event type only once."""
    candidates = []
    directory = FIXTURES / case.type
    if case.id == case.type and directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name.endswith((".expected.json", ".headers.json")) or path.name.startswith("_"):
                continue
            side = path.with_name(path.name[: -len(".json")] + ".headers.json")
            headers = lower(json.loads(side.read_text())) if side.exists() else {}
            candidates.append(_seed(case, f"{case.type}/{path.name}", path.read_bytes(), headers))
    candidates.append(_seed(case, f"{case.id} case body", case.body, {}))
    found: list[Seed] = []
    for seed in candidates:
        if seed is None or any((seed.doc, seed.event_type) == (other.doc, other.event_type) for other in found):
            continue
        if case.type == "adyen" and case.id == "adyen" and "notificationItems" not in seed.doc:
            continue
        found.append(seed)
    return tuple(found)


@cache
def sources() -> tuple[Source, ...]:
    return tuple(Source(case.id, case, _seeds(case)) for case in CASES)


def source(name: str) -> Source:
    return next(s for s in sources() if s.name == name)


# -- making a seed unique per request ---------------------------------------------------------------------

_ID_KEY = re.compile(r"(^|_)(id|uuid|reference)$|[a-z](Id|Reference|UUID)$|^(order_number|number|name)$")
#: id-like keys naming the configured app or account, not the event: changing them makes a foreign webhook
_ACCOUNT_KEYS = frozenset({"bundleId", "appAppleId", "packageName", "merchantAccountCode", "site_id"})
_ID_TEXT = re.compile(r"^[A-Za-z]{2,8}_(?=[A-Za-z]*[0-9])[A-Za-z0-9]{6,}$|^[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}$")


def freshen(value: Any, n: int) -> Any:
    """A copy of `value` with every id-like value made unique for request number `n`."""

    def walk(node: Any, key: str | None) -> Any:
        if key in _ACCOUNT_KEYS:
            return node
        if isinstance(node, dict):
            return {k: walk(v, k if isinstance(k, str) else None) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if isinstance(node, bool):
            return node
        if isinstance(node, int) and key is not None and _ID_KEY.search(key) and 0 < node < 10**12:
            return node * 1_000_000 + n % 1_000_000
        if isinstance(node, str) and ((key is not None and _ID_KEY.search(key)) or _ID_TEXT.match(node)):
            return f"{node}-fz{n}" if node else node
        return node

    return walk(value, None)


# -- mutations of a seed ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    op: str  # set | dup_before | dup_after | delete | grow
    path: JsonPath
    value: Frag | None = None
    count: int = 0

    def __str__(self) -> str:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path) or "<root>"
        if self.op == "set":
            return f"{where} := {self.value}"
        if self.op == "grow":
            return f"{where} grown to {self.count} copies of its first element"
        if self.op == "delete":
            return f"{where} removed"
        side = "before" if self.op == "dup_before" else "after"
        return f"{where} duplicated {side} as {self.value}"


def apply(doc: Any, mutation: Mutation) -> Any:
    """`doc` with the mutation applied (a new tree; `doc` is not changed)."""
    tree = copy.deepcopy(doc)
    if not mutation.path:
        return mutation.value if mutation.op == "set" else tree
    try:
        parent = get(tree, mutation.path[:-1])
    except (KeyError, IndexError, TypeError):
        return tree  # an earlier mutation replaced a parent
    last = mutation.path[-1]
    if isinstance(parent, Frag) or (isinstance(parent, dict) and last not in parent):
        return tree
    if isinstance(parent, list) and not (isinstance(last, int) and last < len(parent)):
        return tree
    if mutation.op == "set":
        parent[last] = mutation.value
    elif mutation.op == "delete":
        del parent[last]
    elif mutation.op == "grow":
        target = parent[last]
        if isinstance(target, list) and target:
            parent[last] = [freshen(target[0], index) for index in range(mutation.count)]  # distinct ids
    elif isinstance(parent, dict) and isinstance(last, str):
        rebuilt: dict[Any, Any] = {}
        for key, value in parent.items():
            if key == last and mutation.op == "dup_before":
                rebuilt[DupKey(last)] = mutation.value
            rebuilt[key] = value
            if key == last and mutation.op == "dup_after":
                rebuilt[DupKey(last)] = mutation.value
        parent.clear()
        parent.update(rebuilt)
    return tree


@st.composite
def mutations(draw: st.DrawFn, seed: Seed) -> Mutation:
    op = draw(st.sampled_from(["set"] * 6 + ["dup_before", "dup_after", "delete", "grow"]))
    if op == "grow" and seed.lists:
        path = draw(st.sampled_from(seed.lists))
        return Mutation("grow", path, count=draw(st.sampled_from([2, 50, 500, 2_000, 5_000])))
    if op == "grow":
        op = "set"
    pool = seed.targeted if draw(st.integers(0, 9)) < 8 else seed.all_paths
    path = draw(st.sampled_from(pool)) if pool else ()
    if op in ("dup_before", "dup_after") and (not path or not isinstance(path[-1], str)):
        op = "set"
    if op == "delete":
        return Mutation("delete", path)
    return Mutation(op, path, draw(fragments()))


#: headers every source may be sent, beside the ones its signer sets
EXTRA_HEADERS = ("content-type", "webhook-timestamp", "webhook-id", "x-event-name", "authorization")

# -- whole requests -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FuzzInput:
    """A description of one request; `build()` turns it into bytes."""

    source: str
    kind: str  # garbage | headers | signed
    seed: str = ""
    mutations: tuple[Mutation, ...] = ()
    edit: BodyEdit | None = None
    header_edits: tuple[HeaderEdit, ...] = ()
    garbage: bytes = b""
    garbage_headers: tuple[tuple[str, bytes], ...] = ()

    def describe(self) -> str:
        parts = [f"{self.kind} request to /webhooks/{self.source}"]
        if self.seed:
            parts.append(f"seed {self.seed}")
        parts += [str(m) for m in self.mutations]
        if self.edit is not None:
            parts.append(str(self.edit))
        parts += [str(h) for h in self.header_edits]
        if self.kind == "garbage":
            parts.append(f"body {self.garbage[:60]!r} ({len(self.garbage)} bytes)")
            parts += [f"header {k}: {v[:40]!r}" for k, v in self.garbage_headers]
        return "; ".join(parts)


@dataclass
class Request:
    source: str
    body: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


def _json_values() -> st.SearchStrategy[Any]:
    numbers = st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    leaves = st.none() | st.booleans() | numbers | st.text(max_size=20)
    return st.recursive(
        leaves, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5)
    )


@st.composite
def fuzz_inputs(draw: st.DrawFn, only: str | None = None) -> FuzzInput:
    """One hostile request description for a source (any, or `only`)."""
    src = source(only) if only else draw(st.sampled_from(sources()))
    kind = draw(st.sampled_from(["signed"] * 6 + ["headers"] * 2 + ["garbage"] * 2))
    if kind == "garbage" or not src.seeds:
        how = draw(st.sampled_from(["bytes", "json"]))
        if how == "bytes":
            body = draw(st.binary(max_size=300))
        else:
            body = orjson.dumps(draw(_json_values()))
        names = (src.case.header, *EXTRA_HEADERS)
        chosen = draw(st.lists(st.tuples(st.sampled_from(names), header_values()), max_size=3))
        return FuzzInput(src.name, "garbage", garbage=body, garbage_headers=tuple(chosen))
    seed = draw(st.sampled_from(src.seeds))
    names = (*signed_header_names(src.name), *EXTRA_HEADERS)
    if kind == "headers":
        edits = tuple(draw(st.lists(header_edits(names), min_size=1, max_size=3)))
        return FuzzInput(src.name, "headers", seed.name, header_edits=edits)
    muts = tuple(draw(st.lists(mutations(seed), min_size=1, max_size=3)))
    edit = draw(body_edits()) if draw(st.integers(0, 9)) == 0 else None
    edits = tuple(draw(st.lists(header_edits(names), max_size=1))) if draw(st.integers(0, 9)) == 0 else ()
    return FuzzInput(src.name, "signed", seed.name, muts, edit, edits)


@cache
def signed_header_names(name: str) -> tuple[str, ...]:
    """The headers the source's sender sets (lower-case)."""
    src = source(name)
    seed = src.seeds[0]
    _, headers = sign(src, seed, encode(seed.doc), 1_700_000_000.0)
    return tuple(sorted(headers))


def _adyen_sign_items(tree: Any, key_hex: str) -> Any:
    """Sign every NotificationRequestItem of a (possibly hostile) Adyen body as Adyen would: over the values
    a JSON parser reads from the bytes we send."""
    try:
        document = orjson.loads(encode(tree))
    except orjson.JSONDecodeError:
        return tree
    items = document.get("notificationItems") if isinstance(document, dict) else None
    entries = tree.get("notificationItems") if isinstance(tree, dict) else None
    if not isinstance(items, list) or not isinstance(entries, list) or len(items) != len(entries):
        return tree
    for parsed, entry in zip(items, entries, strict=True):
        item = parsed.get("NotificationRequestItem") if isinstance(parsed, dict) else None
        node = entry.get("NotificationRequestItem") if isinstance(entry, dict) else None
        if not isinstance(item, dict) or not isinstance(node, dict):
            continue
        try:
            signature = adyen_item_signature(item, key_hex)
        except (AttributeError, TypeError, ValueError):
            continue  # a value Adyen itself could not have signed
        additional = node.get("additionalData")
        if additional is None:
            node["additionalData"] = additional = {}
        if isinstance(additional, dict):
            additional["hmacSignature"] = signature
    return tree


def _apple_body(tree: Any, now: float) -> bytes:
    """Apple's `{"signedPayload": JWS}` for a (possibly hostile) decoded notification: the transaction and
    renewal info signed first, then the notification, each over exactly the bytes `encode` makes."""
    signer = apple_signing.chain("test")

    def jws(payload: bytes) -> str:
        head = orjson.dumps({"alg": "ES256", "x5c": signer.x5c})
        signing_input = f"{_segment(head)}.{_segment(payload)}"
        r, s = decode_dss_signature(signer.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_segment(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    if isinstance(tree, dict):
        data = tree.get("data")
        if isinstance(data, dict):
            for key in ("signedTransactionInfo", "signedRenewalInfo"):
                if isinstance(data.get(key), dict):
                    data[key] = jws(encode(data[key]))
    return orjson.dumps({"signedPayload": jws(encode(tree))})


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(src: Source, seed: Seed, body: bytes, now: float) -> tuple[bytes, dict[str, bytes]]:
    """Sign `body` (made from `seed`) with the source's secret, as its sender would."""
    case = src.case
    options = case.signing_options(case.secret)
    if case.type == "adyen" and isinstance(seed.doc, dict) and "notificationItems" in seed.doc:
        return body, {"content-type": b"application/json"}  # signed inside the body: see build()
    if case.type == "apple_app_store":
        return body, {"content-type": b"application/json"}  # signed inside the body: see build()
    try:
        body, headers = signed_request(case.type, body, secret=case.secret, now=now, options=options,
                                       event_type=seed.event_type)  # fmt: skip
    except (BridgeError, ValueError, KeyError):
        # the sender signs something it reads from the body (MercadoPago's data.id): not there, no signature
        return body, {"content-type": b"application/json"}
    return body, {k: v.encode("latin-1") for k, v in lower(headers).items()}


def build(item: FuzzInput, n: int, now: float) -> Request:
    """The request for `item`, request number `n` (ids are made unique with it), signed at `now`."""
    src = source(item.source)
    if item.kind == "garbage":
        return Request(src.name, item.garbage, dict(item.garbage_headers))
    seed = next(s for s in src.seeds if s.name == item.seed)
    tree = freshen(seed.doc, n)
    # arrays grow first, as copies of the seed's own element: a hostile value then lands in the first few
    # elements only (a 20 MB amount copied 5,000 times would only measure how fast this machine runs out of memory)
    for mutation in sorted(item.mutations, key=lambda m: m.op != "grow"):
        tree = apply(tree, mutation)
    if src.type == "adyen" and "notificationItems" in (seed.doc if isinstance(seed.doc, dict) else {}):
        tree = _adyen_sign_items(tree, src.case.secret)
    body = _apple_body(tree, now) if src.type == "apple_app_store" else encode(tree)
    if item.edit is not None:
        body = item.edit.apply(body)
    body, headers = sign(src, seed, body, now)
    for edit in item.header_edits:
        edit.apply(headers)
    return Request(src.name, body, headers)


def _text(value: str) -> Frag:
    return Frag(json.dumps(value).encode(), f"str({value!r})")


def _signed(source_name: str, seed: str, *changes: Mutation) -> FuzzInput:
    return FuzzInput(source_name, "signed", seed, changes)


def _headers(source_name: str, seed: str, name: str, value: bytes) -> FuzzInput:
    return FuzzInput(source_name, "headers", seed, header_edits=(HeaderEdit(name, value),))


_SW_SEED = "standard_webhooks/contact.created.full.json"
_ORDER = "shopify/orders-create.json"
_SQUARE = "square/webhooks.test_notification.json"
_GOCARDLESS = "gocardless/subscriptions.created+mandates.created.json"

#: requests that each showed a distinct failure once: the test and the long run send them first (hypothesis
#: explicit examples), so these shapes are checked on every run, whatever the random part draws
KNOWN: tuple[FuzzInput, ...] = (
    # an object nested deeper than the JSON encoder's limit, copied into the canonical event
    _signed("recurly", "recurly/account.created.json", Mutation("set", ("site_id",), deep(255, "array"))),
    # a numeric string beyond 64 bits where the mapping reads a number
    _signed("shopify", _ORDER, Mutation("set", ("line_items", 0, "quantity"), _text("-18446744073709551616"))),
    # a huge decimal exponent in an amount
    _signed("shopify", _ORDER, Mutation("set", ("total_price",), _text("1e20000000"))),
    # a control character in a value that becomes an outbound header (Elevar's user-agent)
    _signed("shopify", _ORDER, Mutation("set", ("client_details", "user_agent"), _text("Mozilla/5.0\x01(evil)"))),
    # CR/LF in the event id, which becomes the http destination's Idempotency-Key
    _signed("square", _SQUARE, Mutation("set", ("event_id",), _text("1.2.3.4\r\n5.6.7.8"))),
    # unsigned timestamps out of range: before the signature is checked
    _headers("standard_webhooks", _SW_SEED, "webhook-timestamp", b"99999999999999999999"),
    _headers("standard_webhooks", _SW_SEED, "webhook-timestamp", b"999999999999"),
    # a signed batch of a size a 1 MiB body allows
    _signed("gocardless", _GOCARDLESS, Mutation("grow", ("events",), count=2200)),
)  # fmt: skip


def one_per_source() -> tuple[FuzzInput, ...]:
    """An unsigned request with an out-of-range signature header for every source: each URL is hit on every run."""
    return tuple(
        FuzzInput(src.name, "garbage", garbage=b"{}", garbage_headers=((src.case.header, b"99999999999999999999"),))
        for src in sources()
    )
