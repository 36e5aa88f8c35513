#!/usr/bin/env python3
"""Handoff latency, end to end on real parts: p50 and p99 of

* **key press -> SMS accepted by the gateway**: a SIPp caller presses 8 at the payment menu; the
  controller timestamps the menu answer arriving over AGI and Kannel's ``202 Accepted`` for the
  sendsms carrying the link (continuation row written, token signed, HTTP to smsbox in between).
  Read from the controller's log line ``handoff: key press to SMS accepted ... in N ms``.
* **link open -> chat showing the resumed step**: a real Chromium opens the link from the SMS the
  fake SMSC received; timed from ``page.goto`` until the chat page shows the menu's step (the
  GET, the claiming POST, the redirect, the page, its script and the state request).

Calls run ``--parallel`` at a time (each its own SIPp), links are opened one after another.
A script, not a test: it prints figures and writes bench/results/handoff-*.json.

Run: ``.venv/bin/python bench/handoff.py [--calls 40] [--parallel 10]`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ivr.flow.loader import check_paths  # noqa: E402
from ivr.flow.model import SYSTEM_PROMPTS, Prompt  # noqa: E402
from ivr.prompts.build import PromptItem, build_prompts  # noqa: E402
from lab.asterisk import AsteriskLab  # noqa: E402
from lab.browser import chromium  # noqa: E402
from lab.controller import ControllerProcess  # noqa: E402
from lab.kannel import KannelLab, free_port  # noqa: E402
from lab.lock import lab_session_lock  # noqa: E402
from lab.sipp import CallerScript, Dtmf, run_caller_async  # noqa: E402

ACCOUNT = "12345678"
LINE = re.compile(r"key press to SMS accepted by the gateway in ([\d.]+) ms \(journey (\w+)\)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 1),
        "p99_ms": round(percentile(values, 99), 1),
        "max_ms": round(max(values), 1),
    }


def prompt_ms(lab: AsteriskLab, text: str) -> int:
    import wave

    name = Prompt(text).audio_name().split("/", 1)[1]
    with wave.open(str(lab.sounds_dir / "ivr" / f"{name}.wav")) as w:
        return int(w.getnframes() * 1000 / w.getframerate())


async def run(calls: int, parallel: int) -> dict[str, Any]:
    lab = AsteriskLab()
    lab.provision()
    lab.install_config()
    flows, problems = check_paths([REPO / "dialplans"])
    assert not problems, problems
    items = [PromptItem(p.audio_name(), p.text) for p in SYSTEM_PROMPTS]
    for flow in flows:
        items += [PromptItem(p.audio_name(), p.text) for p in flow.prompts() if not p.audio]
    build_prompts(items, lab.sounds_dir)
    started = not lab.is_running()
    if started:
        lab.start()
    web_port = free_port()
    inbound = secrets.token_urlsafe(16)
    kannel = KannelLab(get_url=f"http://127.0.0.1:{web_port}/sms/kannel/mo?key={inbound}&from=%p&to=%P&text=%a")
    kannel.start()
    data_dir = Path(tempfile.mkdtemp(prefix="ivr-bench-handoff-"))
    controller = ControllerProcess(
        flows_dir=REPO / "dialplans",
        data_dir=data_dir,
        env={
            "IVR_SPEECH_ENGINE": "off",
            "IVR_WEB_PORT": str(web_port),
            "IVR_HANDOFF_SECRET": secrets.token_urlsafe(24),
            "IVR_SMS_PROVIDER": "kannel",
            "IVR_SMS_KANNEL_URL": kannel.sendsms_url,
            "IVR_SMS_KANNEL_USERNAME": kannel.username,
            "IVR_SMS_KANNEL_PASSWORD": kannel.password,
            "IVR_SMS_INBOUND_TOKEN": inbound,
            "IVR_SMS_SENDER": "5550200",  # Kannel refuses a message with no sender (no global-sender set)
        },
    )
    controller.start()
    try:
        account_at = prompt_ms(lab, "Example Power payments.") + 400
        press_8 = account_at + 8 * 250 + 1500
        numbers = [f"+1555200{i:04d}" for i in range(calls)]
        semaphore = asyncio.Semaphore(parallel)

        async def call(number: str) -> None:
            async with semaphore:
                script = CallerScript(
                    caller_id=number,
                    dialled="5550200",
                    dtmf=(Dtmf(ACCOUNT, account_at), Dtmf("8", press_8)),
                    max_call_ms=press_8 + 20000,
                )
                (await run_caller_async(script)).raise_for_failure()

        started_at = time.monotonic()
        await asyncio.gather(*(call(n) for n in numbers))
        calls_s = time.monotonic() - started_at
        links: dict[str, str] = {}
        for number in numbers:
            sms = await asyncio.to_thread(kannel.wait_for_sms, number, timeout=15)
            found = re.search(r"(http://\S+/c/[A-Za-z0-9_-]+)", sms.text)
            assert found, sms
            links[number] = found[1]
        log = controller.log_path.read_text(errors="replace")
        key_to_sms = [float(m[1]) for m in LINE.finditer(log)]
        assert len(key_to_sms) == calls, f"{len(key_to_sms)} handoffs logged for {calls} calls"

        open_to_step: list[float] = []
        async with chromium() as browser:
            context = await browser.new_context()  # type: ignore[attr-defined]
            warm = await context.new_page()  # a first page load warms the browser, not the server
            await warm.goto(f"http://127.0.0.1:{web_port}/chat/static/chat.css")
            for number in numbers:
                page = await context.new_page()
                t0 = time.perf_counter()
                await page.goto(links[number], wait_until="commit")
                try:
                    await page.wait_for_selector("#question[data-step='pay_menu']", state="attached", timeout=10000)
                except Exception:
                    print(f"{number}: {page.url}\n{await page.content()}", file=sys.stderr)
                    raise
                open_to_step.append((time.perf_counter() - t0) * 1000)
                await page.close()
    finally:
        controller.stop()
        kannel.cleanup()
        if started:
            lab.stop()
    return {
        "calls": calls,
        "parallel": parallel,
        "calls_seconds": round(calls_s, 1),
        "key_press_to_sms_accepted": summary(key_to_sms),
        "link_open_to_resumed_step": summary(open_to_step),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=10)
    args = parser.parse_args()
    with lab_session_lock():
        result = asyncio.run(run(args.calls, args.parallel))
    out = REPO / "bench" / "results" / f"handoff-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name in ("key_press_to_sms_accepted", "link_open_to_resumed_step"):
        s = result[name]
        print(f"{name:28} n={s['n']:3} p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  max {s['max_ms']:7.1f} ms")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
