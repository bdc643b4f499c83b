"""A URL named in a message keeps what identifies it and hides what could be a credential."""

from __future__ import annotations

import pytest

from bridge.urls import shown


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://sink.example/hook", "https://sink.example/hook"),
        ("htps://user:hunter2-secret@sink.example/hook", "htps://***@sink.example/hook"),
        ("https://api-key-in-user@sink.example:8443/x", "https://***@sink.example:8443/x"),
        ("https://sink.example/t?api_key=abcdefghijkl&site=shop", "https://sink.example/t?api_key=****ijkl&site=shop"),
        ("postgresql://bridge:pw@db/outbox", "postgresql://***@db/outbox"),
        ("http://[::1", "(not a URL)"),
    ],
)
def test_shown_hides_user_info_and_secret_query_values(url: str, expected: str) -> None:
    assert shown(url) == expected
