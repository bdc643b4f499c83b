"""Elevar server-to-server events (seed: elevar-server-setup.txt).

`POST {endpoint}?source_url=<encoded page URL>[&debug=1]` with `x-website-id`, `authorization: Bearer <server
key>`, `user-agent` = the shopper's user agent and `x-forwarded-for` = the shopper's IP (forwarded, never our
own). Body: the `dl_purchase` data-layer payload with money, counts and quantities as strings, as the doc shows.
`ecommerce.purchase.actionField.id` is the order id, so a browser and a server purchase group into one.
Orders without browser context (POS, subscriptions) get the configured defaults for the fields Elevar needs
(source URL, user agent, IP, landing site), as the doc asks ("mock required fields").

Debug mode (`debug: true`): Elevar validates without processing; 200 `{"result":"accepted"}` counts as
delivered (validated), anything else is a validation failure kept in full in the reason. Production answers 204.
Only `dl_purchase` is documented for server events; other names need an `event_names` entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from bridge.destinations import _common as c
from bridge.destinations.base import (
    USER_AGENT,
    Destination,
    DestinationSettings,
    HttpRequest,
    OptionError,
    Outcome,
    Verdict,
)
from bridge.errors import RenderError

VISITOR_TYPES = ("auto", "logged_in", "guest")
_FULL_BODY_LIMIT = 64 * 1024


class ElevarDestination(Destination):
    type = "elevar"
    options: ClassVar[Mapping[str, str]] = {
        "website_id": "Website ID from My Tracking → API Source → Server Setup; required",
        "server_key": "Server Key (Bearer token) from the same page; required (from ${ENV})",
        "default_source_url": "page URL sent as source_url when the event has no context.page_url (POS, "
        "subscriptions), e.g. https://shop.example.com/; required",
        "default_user_agent": "user-agent header when the event has no context.user_agent (default: bridge's own)",
        "default_ip": "x-forwarded-for when the event has no context.ip (default: header left out)",
        "default_landing_site": "marketing.landing_site when the event has none (default: /)",
        "visitor_type": "auto (logged_in when the event has a customer id, else guest), logged_in or guest",
        "affiliation": "store name sent as actionField.affiliation",
        "debug": "true: validate only (&debug=1), events are not processed; never in production",
    }
    event_names: ClassVar[Mapping[str, str]] = {"purchase": "dl_purchase"}

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self.url = c.check_http_url(settings.url, "url")
        self._website_id = c.option_text(options, "website_id", required=True)
        self._server_key = c.option_text(options, "server_key", required=True)
        self.default_source_url = c.check_http_url(
            c.option_text(options, "default_source_url", required=True), "default_source_url"
        )
        self.default_user_agent = c.option_text(options, "default_user_agent", default=USER_AGENT)
        self.default_ip = c.option_text(options, "default_ip")
        self.default_landing_site = c.option_text(options, "default_landing_site", default="/")
        self.visitor_type = c.option_choice(options, "visitor_type", VISITOR_TYPES, "auto")
        self.affiliation = c.option_text(options, "affiliation")
        self.debug = c.option_bool(options, "debug")
        for key, value in (("default_user_agent", self.default_user_agent), ("default_ip", self.default_ip)):
            if "\r" in value or "\n" in value:
                raise OptionError(key, f"{key} must be a single line")

    def __repr__(self) -> str:
        return f"ElevarDestination(name={self.name!r}, url={self.url!r}, debug={self.debug})"

    # -- rendering -------------------------------------------------------------------------------------

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        if len(events) != 1:
            raise RenderError(f"Elevar takes one event per request, got {len(events)}")
        event = events[0]
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        page_url = c.text(event, "context.page_url")
        source_url = page_url if page_url and c.is_http_url(page_url) else self.default_source_url
        separator = "&" if urlsplit(self.url).query else "?"
        url = f"{self.url}{separator}source_url={quote(source_url, safe='')}"
        if self.debug:
            url += "&debug=1"
        headers = {
            "content-type": "application/json",
            "x-website-id": self._website_id,
            "authorization": f"Bearer {self._server_key}",
            "user-agent": c.text(event, "context.user_agent") or self.default_user_agent,
        }
        ip = c.text(event, "context.ip") or self.default_ip
        if ip:
            headers["x-forwarded-for"] = ip
        return HttpRequest(
            "POST", url, c.merge_headers(self.settings.headers, headers), c.json_bytes(self.payload(name, event))
        )

    def payload(self, name: str, event: Mapping[str, Any]) -> dict[str, Any]:
        referrer = c.text(event, "context.referrer")
        document: dict[str, Any] = {
            "event": name,
            "event_id": c.event_id(event),
            "event_time": c.text(event, "occurred_at") or _required("occurred_at"),
            "marketing": self._marketing(event),
            "user_properties": self._user_properties(event),
            "ecommerce": self._ecommerce(event),
        }
        if referrer:
            document["page"] = {"raw_referrer": referrer}
        return document

    def _marketing(self, event: Mapping[str, Any]) -> dict[str, Any]:
        landing = c.text(event, "context.landing_site")
        marketing: dict[str, Any] = {"landing_site": landing or self.default_landing_site}
        for key in (
            "gclid",
            "fbclid",
            "msclkid",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "utm_term",
            "utm_content",
        ):
            value = c.text(event, f"context.{key}")
            if value:
                marketing[key] = value
        return marketing

    def _user_properties(self, event: Mapping[str, Any]) -> dict[str, Any]:
        customer_id = c.text(event, "customer.id")
        visitor_type = self.visitor_type
        if visitor_type == "auto":
            visitor_type = "logged_in" if customer_id else "guest"
        email = c.text(event, "customer.email")
        tags = c.get(event, "customer.tags")
        order_count = c.get(event, "customer.order_count")
        properties: dict[str, Any] = {
            "customer_id": customer_id,
            "customer_email": email.lower() if email else None,
            "customer_first_name": c.text(event, "customer.first_name"),
            "customer_last_name": c.text(event, "customer.last_name"),
            "customer_address_1": c.text(event, "customer.address.line1"),
            "customer_address_2": c.text(event, "customer.address.line2"),
            "customer_city": c.text(event, "customer.address.city"),
            "customer_country": c.text(event, "customer.address.country_code"),
            "customer_province": c.text(event, "customer.address.region"),
            "customer_province_code": c.text(event, "customer.address.region_code"),
            "customer_zip": c.text(event, "customer.address.postal_code"),
            "customer_phone": c.text(event, "customer.phone"),
            "customer_order_count": str(order_count) if isinstance(order_count, int) else None,
            "customer_total_spent": c.money_text(c.money(c.get(event, "customer.total_spent"), "customer.total_spent")),
            "customer_tags": ",".join(str(t) for t in tags) if isinstance(tags, list) else None,
        }
        rendered: dict[str, Any] = c.compact(properties)
        rendered["visitor_type"] = visitor_type
        return rendered

    def _ecommerce(self, event: Mapping[str, Any]) -> dict[str, Any]:
        value, cur = c.amount_and_currency(event)
        if cur is None:
            raise RenderError("ecommerce.currencyCode: the event has no order.currency / subscription.currency")
        if value is None:
            raise RenderError("actionField.revenue: the event has no order.total / subscription.amount")
        order_id = c.text(event, "order.id") or c.text(event, "subscription.id") or c.event_id(event)
        money_fields = {"tax": "order.tax", "shipping": "order.shipping", "sub_total": "order.subtotal"}
        action: dict[str, Any] = {
            "id": order_id,
            "order_name": c.text(event, "order.number"),
            "revenue": c.money_text(value),
            **{key: c.money_text(c.money(c.get(event, path), path)) for key, path in money_fields.items()},
            "affiliation": self.affiliation or None,
            "product_sub_total": c.money_text(c.money(c.get(event, "order.subtotal"), "order.subtotal")),
            "discount_amount": c.money_text(c.money(c.get(event, "order.discount"), "order.discount")),
            "sales_channel": c.text(event, "order.channel"),
            "physical_location_id": c.text(event, "order.location_id"),
        }
        products = [self._product(item, index) for index, item in enumerate(c.items(event))]
        return {"currencyCode": cur, "purchase": {"actionField": c.compact(action), "products": products}}

    @staticmethod
    def _product(item: Mapping[str, Any], index: int) -> dict[str, Any]:
        where = f"order.items[{index}]"
        quantity = item.get("quantity")
        inventory = item.get("inventory")
        product = {
            "id": c.text(item, "sku") or c.text(item, "variant_id") or c.text(item, "product_id"),
            "name": c.text(item, "name"),
            "brand": c.text(item, "brand"),
            "category": c.text(item, "category"),
            "variant": c.text(item, "variant"),
            "price": c.money_text(c.money(item.get("price"), f"{where}.price")),
            "quantity": str(quantity) if isinstance(quantity, int) and not isinstance(quantity, bool) else "1",
            "position": str(index + 1),
            "product_id": c.text(item, "product_id"),
            "variant_id": c.text(item, "variant_id"),
            "cogs": c.money_text(c.money(item.get("cogs"), f"{where}.cogs")),
        }
        rendered: dict[str, Any] = c.compact(product)
        if "price" not in rendered:
            raise RenderError(f"{where}.price is required by Elevar's products[]")
        # the doc's stand-ins when unknown
        compare = c.money_text(c.money(item.get("compare_at_price"), f"{where}.compare_at_price"))
        rendered["compare_at_price"] = compare or "0.0"
        rendered["image"] = c.text(item, "image") or ""
        rendered["inventory"] = str(inventory) if isinstance(inventory, int) else ""
        return rendered

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        if self.debug:
            full = body[:_FULL_BODY_LIMIT].decode("utf-8", "replace").strip()
            if status == 200 and (c.json_object(body) or {}).get("result") == "accepted":
                return Outcome(
                    Verdict.DELIVERED, 'HTTP 200 debug: payload validated ({"result":"accepted"}), not processed'
                )
            if 200 <= status < 300 or (400 <= status < 500 and status not in (408, 425, 429)):
                return Outcome(Verdict.DEAD, f"HTTP {status} debug validation failed: {full or '(empty body)'}")
        if status == 204:
            return Outcome(Verdict.DELIVERED, "HTTP 204")
        return c.classify_with(
            status,
            body,
            permanent={
                400: "bad request: Elevar rejected the payload",
                401: "unauthorized: check the server_key option (it may have been revoked or regenerated)",
                403: "forbidden: check website_id and server_key",
                404: "not found: check the endpoint url and website_id",
            },
            transient={429: "rate limited"},
        )


def _required(field: str) -> str:
    raise RenderError(f"the event has no {field}")


DESTINATION = ElevarDestination
