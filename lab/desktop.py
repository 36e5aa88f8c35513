"""An agent at the desktop in a real browser, the way a person signs in: the login page, then Ready.

Shared by the desktop tests, the hand-off tests and the demo so every one of them walks the same
path an agent does (no session cookie made behind the page's back).
"""

from __future__ import annotations

from typing import Any


async def desktop_login(
    browser: Any,
    base: str,
    username: str,
    password: str,
    *,
    viewport: tuple[int, int] | None = (1280, 900),
    ready: bool = True,
) -> Any:
    """Sign ``username`` in at ``base``/desktop/ in a fresh context and press Ready (``ready=False``:
    stay paused, as signed in, so no call rings yet); returns the page."""
    options = {"viewport": {"width": viewport[0], "height": viewport[1]}} if viewport else {}
    context = await browser.new_context(**options)
    page = await context.new_page()
    await page.goto(f"{base}/desktop/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#signin")
    await page.wait_for_url(f"{base}/desktop/")
    await page.wait_for_selector("#status[data-status=paused]")
    if not ready:
        return page
    await page.click("#btn-ready")
    await page.wait_for_selector("#status[data-status=ready]")
    return page
