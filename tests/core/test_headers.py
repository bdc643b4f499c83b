"""The check every request gets before it goes on the wire (`checked_request`), for every destination type."""

from __future__ import annotations

import pytest

from bridge.destinations.base import HttpRequest, checked_request
from bridge.errors import RenderError


def request(headers: dict[str, str], url: str = "https://api.example.com/v1", method: str = "POST") -> HttpRequest:
    return HttpRequest(method, url, headers, b"{}")


def test_clean_requests_pass_unchanged() -> None:
    clean = request({"User-Agent": "Mozilla/5.0\t(X11)", "Idempotency-Key": "evt_1", "X-Name": "Zoë"})
    assert checked_request(clean) is clean


@pytest.mark.parametrize("char", [chr(c) for c in (*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F)])
def test_control_characters_are_removed_from_descriptive_headers(char: str) -> None:
    checked = checked_request(
        request({"user-agent": f"Mozilla{char}/5.0", "X-Forwarded-For": f"203.0.113.9{char}", "Referer": "https://a/"})
    )
    assert checked.headers == {"user-agent": "Mozilla/5.0", "X-Forwarded-For": "203.0.113.9", "Referer": "https://a/"}
    assert checked.cleaned == ("user-agent", "X-Forwarded-For")


def test_a_descriptive_header_left_empty_is_dropped() -> None:
    checked = checked_request(request({"User-Agent": "\x00\x01", "Content-Type": "application/json"}))
    assert checked.headers == {"Content-Type": "application/json"}
    assert checked.cleaned == ("User-Agent",)


@pytest.mark.parametrize(
    ("headers", "url", "method", "message"),
    [
        (
            {"Idempotency-Key": "pi_\x01x"},
            None,
            "POST",
            "header Idempotency-Key: the value has a control character (0x01 at position 3)",
        ),
        (
            {"Authorization": "Bearer sk_live_secret\n"},
            None,
            "POST",
            "header Authorization: the value has a control character (0x0a at position 21)",
        ),
        ({"X-Event": "purchase\x7f"}, None, "POST", "header X-Event: the value has a control character (0x7f"),
        ({"X Bad": "1"}, None, "POST", "header name 'X Bad' is not a valid HTTP header name"),
        ({}, "https://api.example.com/\x00x", "POST", "the URL has a control character (0x00 at position 24)"),
        ({}, None, "PO ST", "the HTTP method 'PO ST' is not a valid method"),
    ],
)
def test_anything_else_is_a_render_error_naming_it(
    headers: dict[str, str], url: str | None, method: str, message: str
) -> None:
    with pytest.raises(RenderError) as raised:
        checked_request(request(headers, url or "https://api.example.com/v1", method))
    assert str(raised.value).startswith(message)
    assert "sk_live_secret" not in str(raised.value)  # values are never quoted
