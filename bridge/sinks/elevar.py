"""A strict local Elevar server-to-server endpoint (seed: elevar-server-setup.txt).

POST {endpoint}?source_url=<absolute URL>[&debug=1]; headers `x-website-id`, `authorization: Bearer <key>`,
`content-type: application/json`, a `user-agent`; optional `x-forwarded-for` must be an IP. Body: the data-layer
event (`event` dl_*, `event_id`, ISO 8601 `event_time`, `marketing.landing_site`, `user_properties.visitor_type`
logged_in|guest, every user property a string, `ecommerce.currencyCode`, and for dl_purchase
`ecommerce.purchase.actionField.id` plus string money and `products[]` with string price/quantity).
Production answers 204 (no body); debug answers 200 `{"result":"accepted"}` or 400 with the errors.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from bridge.sinks.base import Reject, StrictFake, is_text

PATH = "/api/v1/server"
_MONEY = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_ACTION_MONEY = ("revenue", "tax", "shipping", "sub_total", "product_sub_total", "discount_amount")
_PRODUCT_TEXT = ("price", "quantity", "position", "compare_at_price", "cogs")


def validate(document: Any) -> list[str]:
    """Every validation problem of a data-layer event (empty: valid)."""
    if not isinstance(document, dict):
        return ["body must be an object"]
    errors: list[str] = []
    if not (is_text(document.get("event")) and str(document["event"]).startswith("dl_")):
        errors.append("event: required, a dl_* name")
    if not is_text(document.get("event_id")):
        errors.append("event_id: required")
    try:
        datetime.fromisoformat(str(document.get("event_time")).replace("Z", "+00:00"))
    except ValueError:
        errors.append("event_time: required, ISO 8601")
    marketing = document.get("marketing")
    if not isinstance(marketing, dict) or not isinstance(marketing.get("landing_site"), str):
        errors.append("marketing.landing_site: required")
    props = document.get("user_properties")
    if not isinstance(props, dict):
        errors.append("user_properties: required")
    else:
        if props.get("visitor_type") not in ("logged_in", "guest"):
            errors.append("user_properties.visitor_type: must be logged_in or guest")
        errors += [f"user_properties.{k}: must be a string" for k, v in props.items() if not isinstance(v, str)]
    ecommerce = document.get("ecommerce")
    if not isinstance(ecommerce, dict):
        return [*errors, "ecommerce: required"]
    if not (isinstance(ecommerce.get("currencyCode"), str) and re.fullmatch(r"[A-Z]{3}", ecommerce["currencyCode"])):
        errors.append("ecommerce.currencyCode: a 3-letter code")
    if document.get("event") == "dl_purchase":
        purchase = ecommerce.get("purchase")
        action = purchase.get("actionField") if isinstance(purchase, dict) else None
        if not isinstance(action, dict) or not is_text(action.get("id")):
            errors.append("ecommerce.purchase.actionField.id: required (order id)")
        else:
            for key in _ACTION_MONEY:
                if key in action and not (isinstance(action[key], str) and _MONEY.fullmatch(action[key])):
                    errors.append(f"actionField.{key}: a decimal string")
            if "revenue" not in action:
                errors.append("actionField.revenue: required")
        products = purchase.get("products", []) if isinstance(purchase, dict) else []
        if not isinstance(products, list):
            errors.append("products: must be an array")
        else:
            for index, product in enumerate(products):
                if not isinstance(product, dict) or not is_text(product.get("id")):
                    errors.append(f"products[{index}].id: required")
                    continue
                for key in _PRODUCT_TEXT:
                    if key in product and not isinstance(product[key], str):
                        errors.append(f"products[{index}].{key}: must be a string")
    return errors


class ElevarFake(StrictFake):
    paths = ((PATH, ("POST",)),)

    def __init__(self, website_id: str, server_key: str) -> None:
        self.website_id = website_id
        self.server_key = server_key
        super().__init__()

    async def handle(self, record: dict[str, Any]) -> tuple[int, Any, Mapping[str, str]]:
        headers = record["headers"]
        if headers.get("authorization") != f"Bearer {self.server_key}":
            raise Reject(401, "missing or invalid server key", {"error": "Unauthorized"})
        if headers.get("x-website-id") != self.website_id:
            raise Reject(403, "x-website-id does not match the key", {"error": "Forbidden"})
        debug = record["query"].get("debug") == "1"

        def error(message: str) -> Any:
            return {"result": "rejected", "errors": [message]}

        source_url = record["query"].get("source_url", "")
        parts = urlsplit(source_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Reject(400, f"source_url {source_url!r} is not an absolute URL", error("source_url: required"))
        if not headers.get("user-agent"):
            raise Reject(400, "no user-agent", error("user-agent header: required"))
        if "x-forwarded-for" in headers:
            try:
                ipaddress.ip_address(headers["x-forwarded-for"].split(",")[0].strip())
            except ValueError:
                raise Reject(400, "x-forwarded-for is not an IP", error("x-forwarded-for: invalid")) from None
        document = self.parse_json(record, error)
        problems = validate(document)
        if problems:
            raise Reject(400, "; ".join(problems), {"result": "rejected", "errors": problems})
        if debug:
            return 200, {"result": "accepted"}, {}
        return 204, None, {}
