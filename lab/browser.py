"""A real Chromium for end-to-end tests, benchmarks and screenshots, driven by Playwright.

Debian's `chromium` is used as it is (`executable_path`); Playwright's own browser download is
never run, since nothing may be fetched at run time. The flags keep the browser off the network
(no component updates, sync, QUIC or background requests), so every byte it sends goes to the
controller on loopback.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from lab.errors import LabError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
)

#: For the desktop's browser softphone: fake microphone and camera, no permission prompt, and real
#: host ICE candidates (Chromium hides local addresses behind mDNS names, which Asterisk cannot
#: resolve). Add ``--use-file-for-fake-audio-capture=<wav>`` for a known sound.
WEBRTC_ARGS = (
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
)


def chromium_path() -> Path:
    """The system Chromium, or a LabError that says how to install it."""
    found = CHROMIUM if CHROMIUM.exists() else None
    if found is None:
        which = shutil.which("chromium")
        found = Path(which) if which else None
    if found is None:
        raise LabError("Chromium is not installed: run scripts/bootstrap (apt package 'chromium')")
    return found


@contextlib.asynccontextmanager
async def chromium(*, headless: bool = True, extra_args: Sequence[str] = ()) -> AsyncIterator[object]:
    """Launch the system Chromium; yields a Playwright `Browser`, closed (and awaited) on exit.
    ``extra_args``: more command-line flags (``WEBRTC_ARGS`` for the browser softphone).

    Typed as `object` so this module imports without Playwright's stubs; callers that need the
    API annotate with `playwright.async_api.Browser`.
    """
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise LabError("Playwright is not installed: run scripts/bootstrap") from exc
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(chromium_path()), headless=headless, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            await browser.close()
