"""TikTok Events API 2.0 (web events of a TikTok Pixel).

`POST {url}/open_api/{api_version}/event/track/`, header `Access-Token: <token>` (never in the URL), JSON
`{"event_source": "web", "event_source_id": <pixel code>, "test_event_code"?, "data": [event, …]}` with ≤ 1,000
events. TikTok refuses the whole request when one event is invalid (and says so with HTTP 200 and a non-zero
`code`), so every event is checked here first and a bad one is sent on its own (and ends `dead` with its
reason) instead of sinking the batch.

Per event: `event` (table below), `event_time` in Unix **seconds** (never later than now; TikTok's age limit is
not in the contract we follow, so none is enforced), `event_id` = the canonical id (TikTok dedups it with the
pixel's event_id), `user` normalised and hashed by TikTok's rules (bridge.privacy.TIKTOK: email, phone as E.164
with `+` and external_id hashed; ttclid, ttp, ip and user_agent never), `properties` with `value` a JSON number
and an ISO `currency`, `page` {url, referrer}, `limited_data_use`.

Consent (`consent:` option, signal `ad_user_data`): respect (default) leaves every person identifier out when
denied (the user agent alone stays); an event left with nothing TikTok could match on is not routed; require
sends only with consent granted; ignore always sends everything.

Answers: HTTP 200 with `{code, message, request_id, data}`. `code` 0 is success, 20001 partial success
(counted delivered, the message kept), 40100 rate limited (retry), 40700 and 5xxxx TikTok-side errors (retry),
every other code (40001 permission, 40002 parameter, …) dead with TikTok's message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from bridge import privacy
from bridge.destinations import _common as c
from bridge.destinations import _dedup, _packing
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

DEFAULT_URL = "https://business-api.tiktok.com"
DEFAULT_API_VERSION = "v1.3"
MAX_EVENTS = 1000
#: TikTok documents no byte limit for /event/track/ in the contract we follow: 1 MB (n/v)
MAX_BODY_BYTES = 1_000_000
EVENT_SOURCE = "web"
PIXEL_CODE = re.compile(r"[A-Za-z0-9]{1,64}")
#: body codes TikTok answers with HTTP 200 (RudderStack's handler, the contract's source)
SUCCESS_CODES = {0: "OK", 20001: "partial success"}
RETRY_CODES = {40100: "rate limited", 40700: "TikTok internal error"}
DEAD_CODES = {
    40001: "no permission: check access_token and that it belongs to this pixel",
    40002: "invalid parameter",
}
#: user fields TikTok takes as a list of hashes
_LISTED = ("email", "phone", "external_id")


class TikTokDestination(Destination):
    type = "tiktok"
    options: ClassVar[Mapping[str, str]] = {
        "pixel_code": "the Pixel ID (Events Manager → Data sources → <pixel> → Settings), sent as event_source_id; "
        "required",
        "access_token": "Events API access token (the pixel's Settings → Events API → Generate access token); "
        "required, from ${ENV}",
        "api_version": f"Business API version (default {DEFAULT_API_VERSION})",
        "test_event_code": "send as test events (Events Manager → <pixel> → Test events)",
        "limited_data_use": "true: limited_data_use on every event (TikTok restricts how it uses the data)",
        "consent": "respect (default) | require | ignore: how ad_user_data consent gates user data",
    }
    event_names: ClassVar[Mapping[str, str]] = {
        "purchase": "CompletePayment",
        "subscription_started": "Subscribe",
        "trial_started": "StartTrial",
    }
    max_batch = MAX_EVENTS
    max_body_bytes = MAX_BODY_BYTES
    requires_url = False

    def __init__(self, settings: DestinationSettings) -> None:
        super().__init__(settings)
        options = settings.options
        c.check_unknown_options(options, self.options, self.type)
        self.pixel_code = c.option_text(options, "pixel_code", required=True)
        if not PIXEL_CODE.fullmatch(self.pixel_code):
            raise OptionError("pixel_code", f"pixel_code is letters and digits (C4A1B2…), got {self.pixel_code!r}")
        self._token = c.option_text(options, "access_token", required=True)
        self.api_version = c.option_text(options, "api_version", default=DEFAULT_API_VERSION)
        if not re.fullmatch(r"v\d+\.\d+", self.api_version):
            raise OptionError("api_version", f"api_version looks like v1.3, got {self.api_version!r}")
        self.test_event_code = c.option_text(options, "test_event_code") or None
        self.limited_data_use = c.option_bool(options, "limited_data_use")
        self.consent = c.option_choice(options, "consent", privacy.POLICIES, "respect")
        base = c.check_http_url(settings.url.rstrip("/") if settings.url else DEFAULT_URL, "url")
        if "access_token=" in base.lower():
            raise OptionError("url", "do not put the access token in the URL; use the access_token option")
        self.url = f"{base}/open_api/{self.api_version}/event/track/"
        self._headers = {"Access-Token": self._token, "Content-Type": "application/json", "User-Agent": USER_AGENT}

    def __repr__(self) -> str:  # never show the token
        return f"TikTokDestination(name={self.name!r}, pixel_code={self.pixel_code!r}, url={self.url!r})"

    # -- rendering -------------------------------------------------------------------------------------

    def accepts(self, event: Mapping[str, Any]) -> bool:
        share = privacy.sharing(event, self.consent, privacy.AD_SIGNAL)
        if share is privacy.Share.NONE:
            return False
        # nothing TikTok could match on (no identifier, no user agent): not routed rather than sent for nothing
        return bool(self.user(event, people=share is privacy.Share.ALL))

    def user(self, event: Mapping[str, Any], *, people: bool) -> dict[str, Any]:
        fields: dict[str, Any] = privacy.apply(privacy.TIKTOK, event, people=people)
        if people and "ttclid" not in fields:
            # a landing URL carrying the click id (…?ttclid=E.C.P.…) when the checkout did not keep it apart
            for path in ("context.page_url", "context.landing_site"):
                found = _query_value(c.text(event, path), "ttclid")
                clean = privacy.click_id(found) if found else None
                if clean:
                    fields["ttclid"] = clean
                    break
        for key in _LISTED:
            if key in fields:
                fields[key] = [fields[key]]
        return fields

    def tiktok_event(self, event: Mapping[str, Any], now: float) -> dict[str, Any]:
        canonical = c.event_name(event)
        name = c.require_name(self.destination_event_name(canonical), canonical, self.type)
        share = privacy.sharing(event, self.consent, privacy.AD_SIGNAL)
        if share is privacy.Share.NONE:
            raise RenderError("not sent: the ad_user_data consent this destination requires is not granted")
        people = share is privacy.Share.ALL
        user = self.user(event, people=people)
        if not user:
            raise RenderError("TikTok needs something to match the event on (email, phone, ttclid, ip, user agent, …)")
        moment = _packing.event_time(event, now, platform="TikTok")
        value, cur = c.amount_and_currency(event)
        if value is not None and cur is None:
            raise RenderError("value without a currency (order.currency / subscription.currency)")
        contents = [
            {
                "content_id": c.text(item, "sku") or c.text(item, "product_id") or c.text(item, "variant_id"),
                "quantity": item.get("quantity") if isinstance(item.get("quantity"), int) else None,
                "price": c.money(item.get("price"), f"order.items[{index}].price"),
            }
            for index, item in enumerate(c.items(event))
        ]
        contents = [entry for entry in contents if entry["content_id"]]
        properties = {
            "currency": cur,
            "value": value,
            "order_id": c.text(event, "order.id"),
            "content_type": "product" if contents else None,
            "contents": contents,
        }
        url = c.text(event, "context.page_url")
        if url and not people:  # a click id in the page URL identifies the person as well as user.ttclid
            url = _without_query_key(url, "ttclid")
        page = {"url": url, "referrer": c.text(event, "context.referrer")}
        payload = {
            "event": name,
            "event_time": int(moment),
            "event_id": _dedup.event_id(event),
            "user": user,
            "properties": properties,
            "page": {key: text for key, text in page.items() if text and c.is_http_url(text)},
        }
        rendered: dict[str, Any] = c.compact(payload)
        rendered["limited_data_use"] = self.limited_data_use  # false is meaningful: explicitly not limited
        return rendered

    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        now = self.clock.now()
        head = b'{"event_source":' + c.json_bytes(EVENT_SOURCE) + b',"event_source_id":' + c.json_bytes(self.pixel_code)
        if self.test_event_code:
            head += b',"test_event_code":' + c.json_bytes(self.test_event_code)
        head += b',"data":['
        tail = b"]}"
        parts = _packing.pack(
            events,
            lambda event: c.json_bytes(self.tiktok_event(event, now)),
            platform="TikTok",
            max_events=MAX_EVENTS,
            max_bytes=MAX_BODY_BYTES,
            overhead=len(head) + len(tail),
        )
        body = head + b",".join(parts) + tail
        return HttpRequest("POST", self.url, c.merge_headers(self.settings.headers, self._headers), body)

    # -- responses -------------------------------------------------------------------------------------

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        answer = c.json_object(body)
        code = answer.get("code") if answer else None
        if answer is not None and isinstance(code, int) and not isinstance(code, bool):
            return classify_code(status, code, answer)
        if 200 <= status < 300:
            # TikTok always answers with a code: a 2xx without one did not come from TikTok (a proxy, a wrong url)
            return c.with_body(
                Outcome(Verdict.DEAD, f"HTTP {status} without TikTok's code: not TikTok's answer, check the url"),
                body,
            )
        return c.classify_with(
            status,
            body,
            permanent={401: "unauthorized: check access_token", 403: "forbidden: check access_token"},
            transient={},
        )


def classify_code(status: int, code: int, answer: Mapping[str, Any]) -> Outcome:
    """A TikTok answer `{code, message, request_id}` (TikTok reports errors in the body of an HTTP 200)."""
    message = str(answer.get("message") or "")[:300]
    request_id = answer.get("request_id")
    detail = f"TikTok code {code}: {message}" + (f" (request_id {request_id})" if request_id else "")
    if code in SUCCESS_CODES and 200 <= status < 300:
        return Outcome(Verdict.DELIVERED, f"HTTP {status} {SUCCESS_CODES[code]} ({detail})")
    if code in RETRY_CODES:
        return Outcome(Verdict.RETRY, f"HTTP {status} {RETRY_CODES[code]}: {detail}")
    if 50000 <= code < 60000:
        return Outcome(Verdict.RETRY, f"HTTP {status} TikTok server error: {detail}")
    if code in DEAD_CODES:
        return Outcome(Verdict.DEAD, f"HTTP {status} {DEAD_CODES[code]}: {detail}")
    if status == 429 or status >= 500:
        return Outcome(Verdict.RETRY, f"HTTP {status}: {detail}")
    return Outcome(Verdict.DEAD, f"HTTP {status} TikTok refused the request: {detail}")


def _query_value(url: str | None, key: str) -> str | None:
    if not url:
        return None
    try:
        values = parse_qs(urlsplit(url).query).get(key)
    except ValueError:
        return None
    return values[0] if values else None


def _without_query_key(url: str, key: str) -> str:
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != key]
    return urlunsplit(parts._replace(query=urlencode(kept)))


DESTINATION = TikTokDestination
