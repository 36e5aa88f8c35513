"""A real browser claims a continuation link through the page's own form.

Why a browser: our pages send ``Referrer-Policy: no-referrer``, and with it Chromium posts the
claim form with ``Origin: null``. A same-origin check written from the specification alone
refused every real customer; only a real browser shows what it sends.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from ivr.web.chat import same_origin
from lab.browser import chromium
from tests.unit.web.conftest import Live


@pytest.mark.requires("chromium")
async def test_a_customer_opens_the_link_and_the_chat_shows_the_step(live: Live) -> None:
    token = await live.chat_link()
    async with chromium() as browser:
        page = await browser.new_page()  # type: ignore[attr-defined]
        await page.goto(f"{live.base}/c/{token}")
        await page.wait_for_selector("body[data-ready='1']", state="attached", timeout=10000)
        assert "/chat/" in page.url


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, True),
        ({"Origin": "http://127.0.0.1:8080"}, True),
        ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, True),
        ({"Origin": "https://evil.example"}, False),
        ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, False),
        ({"Origin": "null"}, False),
    ],
)
def test_same_origin_accepts_our_own_page_only(headers: dict[str, str], allowed: bool) -> None:
    request = make_mocked_request("POST", "/c/x", headers={"Host": "127.0.0.1:8080", **headers})
    assert same_origin(request) is allowed
