"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…]`, HMAC-SHA256 over `f"{t}.{body}"` keyed with the
whole `whsec_…` secret. Valid when any `v1` matches any configured secret (Stripe sends several while a secret
is rolled); other schemes (`v0`) are ignored. The HMAC comparison is the Stripe SDK's own
(`stripe.WebhookSignature.verify_header`, ~6 µs; not `Webhook.construct_event`, which also builds objects).

The header is parsed once and strictly (`params.parse_params`): exactly one `t`, no padding, no empty or
case-variant keys, `t` a plain integer. That one `t` is both the one signed over and the one checked against
the window (300 s in both directions, the injected clock), so a header such as `v1=<sig>, t=<now>,t=<old>`
(which stripe-python reads as `t=<old>`, a lenient reader as `t=<now>`) is refused instead of letting an old
captured request through. Only a header that passed this parse reaches the SDK, so both read the same `t`.
Dedup key: the event id `evt_…`.

Stripe Connect: an endpoint that listens to connected accounts receives events carrying `account`
(`acct_…`, the connected account the event happened on). For those the dedup key is `<account>/<evt_…>` and
the document gains `_account_label`: the label the option `connected_accounts` gives that account (a map
`acct_… -> label`), else the account id itself. With `other_accounts: ignore`, events of accounts not listed
there are acknowledged and not stored. The shipped mapping puts the account into every canonical id
(`<id>@<acct_…>`), so one object id seen on two accounts never shares a delivery, and the account and its
label into `properties`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

from bridge.errors import PayloadError, SignatureError
from bridge.providers.base import (
    InboundEvent,
    OptionError,
    Provider,
    SourceSettings,
    check_timestamp,
    require_header,
    single_event,
)
from bridge.providers.params import SECONDS_DIGITS, integer, parse_params

HEADER = "Stripe-Signature"
_SINGLE = frozenset({"t"})
_REPEATED = frozenset({"v1"})


def parse_signature_header(header: str) -> tuple[str, int, list[str]]:
    """(t as signed, t as seconds, [v1, …]) from a Stripe-Signature value; SignatureError when ambiguous."""
    params = parse_params(header, header=HEADER, separator=",", single=_SINGLE, repeated=_REPEATED)
    if "t" not in params:
        raise SignatureError("Stripe-Signature header has no t= timestamp")
    signatures = params.get("v1", [])
    if not signatures:
        raise SignatureError("Stripe-Signature header has no v1= signature")
    timestamp = params["t"][0]
    return timestamp, integer(timestamp, "Stripe-Signature t=", max_digits=SECONDS_DIGITS), signatures


class StripeProvider(Provider):
    type = "stripe"
    default_tolerance = 300.0
    stored_headers = ("stripe-signature",)
    options = {
        "connected_accounts": "Connect: a map of connected account id (acct_…) -> label for its events (optional)",
        "other_accounts": "Connect: accept (default) or ignore events of accounts not in connected_accounts",
    }

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        self.account_labels, self.ignore_other_accounts = connect_options(settings.options)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        header = require_header(headers, "stripe-signature")
        _, timestamp, _ = parse_signature_header(header)  # refuses every shape the SDK could read another way
        for secret in self.secrets:
            try:
                stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
            except stripe.SignatureVerificationError:
                continue
            except (UnicodeDecodeError, ValueError):
                raise SignatureError("body is not UTF-8 text") from None
            check_timestamp(timestamp, now, self.tolerance)
            return
        raise SignatureError("no Stripe-Signature v1 signature matches a configured secret")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        events = single_event(body, what="Stripe")
        return [scoped for event in events if (scoped := self._connect(event)) is not None]

    def _connect(self, event: InboundEvent) -> InboundEvent | None:
        """A Connect event (one carrying `account`) with its account in the dedup key and its label in the
        document; None when its account is not listed and other accounts are ignored."""
        account = event.document.get("account")
        if account is None:
            return event
        if not isinstance(account, str) or not account:
            raise PayloadError("a Stripe event's account is not an account id")
        label = self.account_labels.get(account)
        if label is None and self.ignore_other_accounts:
            return None
        document = {**event.document, "_account_label": label or account}
        return InboundEvent(f"{account}/{event.event_id}", event.event_type, document)


def connect_options(options: Mapping[str, Any]) -> tuple[dict[str, str], bool]:
    """(account id -> label, whether unlisted accounts are ignored) from a source's Connect options."""
    accounts = options.get("connected_accounts", {})
    if not isinstance(accounts, Mapping) or not all(
        isinstance(k, str) and k.startswith("acct_") and isinstance(v, str) and v for k, v in accounts.items()
    ):
        raise OptionError("connected_accounts", "connected_accounts maps account ids (acct_…) to non-empty labels")
    other = options.get("other_accounts", "accept")
    if other not in ("accept", "ignore"):
        raise OptionError("other_accounts", f"other_accounts is accept or ignore, got {other!r}")
    if other == "ignore" and not accounts:
        raise OptionError(
            "other_accounts", "other_accounts: ignore needs connected_accounts (the accounts to keep)"
        )
    return dict(accounts), other == "ignore"


PROVIDER = StripeProvider
