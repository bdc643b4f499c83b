"""Every provider: a correctly signed request verifies; everything else is refused with SignatureError."""

from __future__ import annotations

import pytest

from bridge.errors import SignatureError
from tests.providers.cases import CASE_IDS, CASES, NOW, Case

TIMESTAMPED = [case for case in CASES if case.timestamped]
ROTATING = [case for case in CASES if case.rotation]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_signed_request_verifies(case: Case) -> None:
    body, headers = case.request()
    await case.build().verify(body, headers, NOW)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_wrong_secret_is_refused(case: Case) -> None:
    body, headers = case.request(case.other_secret)
    with pytest.raises(SignatureError):
        await case.build().verify(body, headers, NOW)


@pytest.mark.parametrize("case", [c for c in CASES if c.body_signed], ids=[c.id for c in CASES if c.body_signed])
async def test_tampered_body_is_refused(case: Case) -> None:
    body, headers = case.request()
    with pytest.raises(SignatureError):
        await case.build().verify(case.tamper(body), headers, NOW)


async def test_chargebee_credentials_do_not_cover_the_body() -> None:
    """Documented limit: Chargebee sends no signature, so Basic auth cannot detect a changed body."""
    case = next(c for c in CASES if c.id == "chargebee")
    body, headers = case.request()
    await case.build().verify(case.tamper(body), headers, NOW)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_missing_signature_is_refused(case: Case) -> None:
    body, headers = case.without_signature(*case.request())
    with pytest.raises(SignatureError):
        await case.build().verify(body, headers, NOW)


@pytest.mark.parametrize(
    ("case", "value"),
    [(case, value) for case in CASES for value in case.garbles],
    ids=[f"{case.id}-{index}" for case in CASES for index, _ in enumerate(case.garbles)],
)
async def test_garbled_signature_is_refused(case: Case, value: str) -> None:
    body, headers = case.garbled(*case.request(), value)
    with pytest.raises(SignatureError):
        await case.build().verify(body, headers, NOW)


@pytest.mark.parametrize("case", TIMESTAMPED, ids=[c.id for c in TIMESTAMPED])
async def test_stale_and_future_timestamps_are_refused(case: Case) -> None:
    provider = case.build()
    tolerance = provider.tolerance
    assert tolerance is not None and tolerance > 0
    for skew in (-tolerance - 10, tolerance + 10):
        body, headers = case.request(now=NOW + skew)
        with pytest.raises(SignatureError, match="timestamp"):
            await provider.verify(body, headers, NOW)
    for skew in (-tolerance + 10, tolerance - 10):
        body, headers = case.request(now=NOW + skew)
        await provider.verify(body, headers, NOW)


@pytest.mark.parametrize("case", TIMESTAMPED, ids=[c.id for c in TIMESTAMPED])
async def test_tolerance_zero_disables_the_window(case: Case) -> None:
    body, headers = case.request(now=NOW - 10 * 86400)
    await case.build(tolerance=0).verify(body, headers, NOW)


@pytest.mark.parametrize("case", ROTATING, ids=[c.id for c in ROTATING])
async def test_rotation(case: Case) -> None:
    old, new = case.other_secret, case.secret
    both = case.build((old, new))
    for secret in (old, new):
        body, headers = case.request(secret)
        await both.verify(body, headers, NOW)
    only_new = case.build((new,))
    body, headers = case.request(old)
    with pytest.raises(SignatureError):
        await only_new.verify(body, headers, NOW)
    body, headers = case.request(new)
    await only_new.verify(body, headers, NOW)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_no_secret_configured_refuses(case: Case) -> None:
    if case.type in ("chargebee", "paypal"):
        pytest.skip("configured through options, not secrets")
    body, headers = case.request()
    with pytest.raises(SignatureError):
        await case.build(()).verify(body, headers, NOW)
