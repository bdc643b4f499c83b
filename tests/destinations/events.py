"""Realistic canonical events (shape per bridge/events.py: money as decimal strings, RFC 3339 UTC times).

Each builder returns a fresh deep copy, so a test may change its event freely.
"""

from __future__ import annotations

import copy
from typing import Any

CUSTOMER: dict[str, Any] = {
    "id": "cus_Q1w2E3r4",
    "email": "  Bill.Call@Example.com ",
    "phone": "+1 (843) 555-0142",
    "first_name": "Bill",
    "last_name": "Call",
    "address": {
        "line1": "1 Hills Plantation Drive",
        "city": "Charleston",
        "region": "South Carolina",
        "region_code": "SC",
        "postal_code": "29401",
        "country_code": "US",
    },
    "tags": ["vip", "newsletter"],
    "order_count": 3,
    "total_spent": "412.40",
}

CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)

_PURCHASE: dict[str, Any] = {
    "name": "purchase",
    "id": "ord_4835925655784",
    "occurred_at": "2024-01-15T14:30:45Z",
    "source": {
        "name": "stripe",
        "provider": "stripe",
        "webhook_id": "evt_1OabcXYZ",
        "webhook_type": "checkout.session.completed",
    },
    "customer": CUSTOMER,
    "order": {
        "id": "ord_4835925655784",
        "number": "#1005",
        "total": "54.98",
        "subtotal": "49.98",
        "tax": "5.00",
        "shipping": "0.00",
        "discount": "0",
        "currency": "USD",
        "coupon": "SPRING10",
        "channel": "web",
        "items": [
            {
                "sku": "LB00161-34689553170476",
                "product_id": "6979886940352",
                "variant_id": "41141193965760",
                "name": "Lovebox Original Color & Photo",
                "brand": "Lovebox INC",
                "category": "Home,Living",
                "variant": "USA wall plug",
                "price": "24.99",
                "quantity": 2,
                "compare_at_price": "29.99",
                "image": "https://cdn.example.com/small.png",
                "cogs": "11.05",
            }
        ],
    },
    "consent": {"analytics": True, "marketing": True},
    "context": {
        "ip": "203.0.113.7",
        "user_agent": CHROME_UA,
        "page_url": "https://shop.example.com/checkout/success?order=1005",
        "referrer": "https://www.google.com/",
        "landing_site": "/products/lovebox?utm_source=google&utm_campaign=spring",
        "session_id": "sess_abc123456",
        "visitor_id": "anon-7f3e9a21",
        "gclid": "Cj0KCQiA-test",
        "utm_source": "google",
        "utm_campaign": "spring",
    },
    "properties": {"gift": True},
}

_REFUND: dict[str, Any] = {
    "name": "refund",
    "id": "re_3Oabc123",
    "occurred_at": "2024-01-20T09:00:00Z",
    "source": {"name": "stripe", "provider": "stripe", "webhook_id": "evt_2", "webhook_type": "charge.refunded"},
    "customer": {"id": "cus_Q1w2E3r4", "email": "bill.call@example.com"},
    "order": {"id": "ord_4835925655784", "total": "24.99", "currency": "USD"},
}

_SUBSCRIPTION_STARTED: dict[str, Any] = {
    "name": "subscription_started",
    "id": "sub_1PqRsT",
    "occurred_at": "2024-02-01T00:00:05Z",
    "source": {
        "name": "stripe",
        "provider": "stripe",
        "webhook_id": "evt_3",
        "webhook_type": "customer.subscription.created",
    },
    "customer": {"id": "cus_Q1w2E3r4", "email": "bill.call@example.com"},
    "subscription": {
        "id": "sub_1PqRsT",
        "plan": "pro_monthly",
        "status": "active",
        "interval": "month",
        "amount": "19.00",
        "currency": "eur",
        "started_at": "2024-02-01T00:00:00Z",
        "current_period_end": "2024-03-01T00:00:00Z",
    },
    "consent": {"marketing": False},
}

_SUBSCRIPTION_CANCELED: dict[str, Any] = {
    "name": "subscription_canceled",
    "id": "sub_1PqRsT:canceled",
    "occurred_at": "2024-05-10T08:00:00Z",
    "customer": {"id": "cus_Q1w2E3r4"},
    "subscription": {
        "id": "sub_1PqRsT",
        "plan": "pro_monthly",
        "amount": "19.00",
        "currency": "EUR",
        "canceled_at": "2024-05-10T08:00:00Z",
        "cancel_reason": "too_expensive",
    },
}

_SUBSCRIPTION_RENEWED: dict[str, Any] = {
    "name": "subscription_renewed",
    "id": "in_1Renew",
    "occurred_at": "2024-03-01T00:00:10Z",
    "customer": {"id": "cus_Q1w2E3r4"},
    "subscription": {
        "id": "sub_1PqRsT",
        "plan": "pro_monthly",
        "amount": "19.00",
        "currency": "EUR",
        "current_period_end": "2024-04-01T00:00:00Z",
        "contract_end_date": "2025-03-01T00:00:00Z",
    },
}

_CONSENT_UPDATED: dict[str, Any] = {
    "name": "consent_updated",
    "id": "consent_77",
    "occurred_at": "2024-03-05T12:00:00Z",
    "customer": {"id": "cus_Q1w2E3r4"},
    "consent": {"analytics": True, "marketing": False},
}

# A point-of-sale order: no browser context at all.
_POS_PURCHASE: dict[str, Any] = {
    "name": "purchase",
    "id": "ord_pos_9001",
    "occurred_at": "2024-01-16T10:00:00Z",
    "order": {
        "id": "ord_pos_9001",
        "number": "#POS-9001",
        "total": "119.99",
        "currency": "USD",
        "channel": "pos",
        "location_id": "00000000042",
        "items": [{"sku": "LB-1", "name": "Lovebox", "price": "119.99", "quantity": 1}],
    },
}


def purchase() -> dict[str, Any]:
    return copy.deepcopy(_PURCHASE)


def refund() -> dict[str, Any]:
    return copy.deepcopy(_REFUND)


def subscription_started() -> dict[str, Any]:
    return copy.deepcopy(_SUBSCRIPTION_STARTED)


def subscription_canceled() -> dict[str, Any]:
    return copy.deepcopy(_SUBSCRIPTION_CANCELED)


def subscription_renewed() -> dict[str, Any]:
    return copy.deepcopy(_SUBSCRIPTION_RENEWED)


def consent_updated() -> dict[str, Any]:
    return copy.deepcopy(_CONSENT_UPDATED)


def pos_purchase() -> dict[str, Any]:
    return copy.deepcopy(_POS_PURCHASE)


def numbered_purchase(n: int) -> dict[str, Any]:
    event = purchase()
    event["id"] = event["order"]["id"] = f"ord_{n:06d}"
    return event
