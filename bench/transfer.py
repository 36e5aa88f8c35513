"""Consultative transfers between two browser agents: click to card painted, and to completed.

    .venv/bin/python bench/transfer.py [--transfers 20]

One lab Asterisk 22 (restarted with this checkout's config), ``ivr serve`` as a child process
(AMI on, speech off), two agents whose phone is ``browser``: Ann (billing) and Bob (support), each
signed in to the desktop in their own page of a real Chromium (fake microphone), registered over
WSS. Per transfer: a SIPp caller goes straight into "billing", Ann's page rings and she answers;
she consults Bob from the card's transfer control (agent ``bob``, a note); Bob's page rings with
the card, he answers in the page; Ann clicks Complete; Bob hangs up after a second with the caller
and both agents are set ready again.

All times are the pages' ``Date.now()`` (one Chromium on this host: one clock), the clicks made
inside the page so no driver round trip is counted:

* **consult click -> card painted on Bob's desktop** = Ann's click on "Consult first" to the frame
  with Bob's card (banner "Consulted by Ann ..." and her note) painted (``window.__ivrPops``);
* **consult click -> Bob's phone rings** = to the INVITE's arrival in Bob's page (JsSIP);
* **complete click -> transfer completed** = Ann's click on "Complete" to Bob's card saying
  "Transferred by Ann ..." (``transfer.received``, sent once the controller has bridged the caller
  with Bob and hung up Ann's leg);
* **complete click -> Ann's phone idle** = to Ann's page seeing her leg end (the BYE over WSS).

Target (issue: a consultative transfer completes, card painted on the second desktop, within 1 s
of the agent's click, p99). Raw numbers go to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.agents import add_agent
from lab.asterisk import WSS_PORT, AsteriskLab
from lab.browser import WEBRTC_ARGS, chromium
from lab.controller import ControllerProcess
from lab.lock import lab_session_lock
from lab.sipp import CallerScript, run_caller_async

RESULTS = Path(__file__).resolve().parent / "results"
FLOW = """\
flow: transfer_bench
numbers: ["5550192"]
start: to_billing
steps:
  to_billing:
    queue: {name: billing, skill: billing, priority: 5}
"""
PASSWORD = "bench-password"
NOTE = "Wants the annual plan; account verified."
FORM = '#call [data-f="transfer"]'
#: Ann's click on a button of the card's transfer form, made in the page; its time (page clock, s)
CLICK = """(name) => {
  const at = Date.now() / 1000;
  document.querySelector('#call [data-f="transfer"] button[name="' + name + '"]').click();
  return at;
}"""
#: in Bob's page, before the complete: when his card's banner turns to "Transferred by"
WATCH_BANNER = """() => {
  window.__xferReceived = null;
  const head = document.querySelector('#call [data-f="transfer-from"] h3');
  new MutationObserver((_, watcher) => {
    if (head.textContent.startsWith("Transferred")) { window.__xferReceived = Date.now() / 1000; watcher.disconnect(); }
  }).observe(head, { childList: true, characterData: true, subtree: true });
}"""
#: in Ann's page, before the complete: when her phone's call ends
WATCH_IDLE = """() => {
  window.__xferIdle = null;
  const phone = document.querySelector("#softphone");
  new MutationObserver((_, watcher) => {
    if (phone.dataset.call === "idle") { window.__xferIdle = Date.now() / 1000; watcher.disconnect(); }
  }).observe(phone, { attributes: true, attributeFilter: ["data-call"] });
}"""


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 1),
        "p99": round(q[98], 1),
        "max": round(ordered[-1], 1),
    }


async def sign_in(browser: Any, base: str, username: str) -> Any:
    context = await browser.new_context(ignore_https_errors=True)  # the lab's self-signed WSS certificate
    page = await context.new_page()
    await page.goto(f"{base}/desktop/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#signin")
    await page.wait_for_selector("#softphone[data-reg=registered]", timeout=20000)
    return page


async def until(page: Any, expression: str, timeout: float = 10) -> None:
    """Poll ``expression`` in the page. Not Playwright's wait_for_function: its polling evaluates a
    string, which the desktop's Content-Security-Policy (no 'unsafe-eval') refuses. The times
    measured are stamped in the page, so the polling interval is not in them."""
    deadline = time.monotonic() + timeout
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout}s: {expression}")
        await asyncio.sleep(0.02)


async def ready(page: Any) -> None:
    if await page.get_attribute("#status", "data-status") != "ready":
        await page.click("#btn-ready")
    await page.wait_for_selector("#status[data-status=ready]")


async def one_transfer(ann: Any, bob: Any, i: int) -> dict[str, float]:
    """One consult from Ann to Bob, completed; the four intervals in ms."""
    await ready(ann)
    await ready(bob)
    pops_before = await bob.evaluate("window.__ivrPops.length")
    rings_before = await bob.evaluate("window.__ivrRings.length")
    caller = asyncio.create_task(
        run_caller_async(CallerScript(caller_id=f"+1555125{i:04d}", dialled="5550192", max_call_ms=40000), timeout=60)
    )
    try:
        await ann.wait_for_selector("#softphone[data-call=ringing]", timeout=20000)
        await ann.click("#sp-answer")
        await ann.wait_for_selector(f"{FORM}:not([hidden])", timeout=10000)
        await ann.select_option(f"{FORM} select[name=kind]", "agent")
        await ann.fill(f"{FORM} input[name=target]", "bob")
        await ann.fill(f"{FORM} input[name=note]", NOTE)
        consult_at = float(await ann.evaluate(CLICK, "consult"))
        await bob.wait_for_selector('#call [data-f="transfer-from"]', timeout=10000)
        await until(bob, f"window.__ivrPops.length > {pops_before}")
        painted_at = float(await bob.evaluate("window.__ivrPops[window.__ivrPops.length - 1].painted_at"))
        await bob.wait_for_selector("#softphone[data-call=ringing]", timeout=10000)
        await until(bob, f"window.__ivrRings.length > {rings_before}")
        rang_at = float(await bob.evaluate("window.__ivrRings[window.__ivrRings.length - 1].at"))
        await bob.click("#sp-answer")
        await bob.wait_for_selector("#call.active", timeout=10000)
        await ann.wait_for_selector(f"{FORM} button[name=complete]:not([hidden])", timeout=10000)
        await bob.evaluate(WATCH_BANNER)
        await ann.evaluate(WATCH_IDLE)
        complete_at = float(await ann.evaluate(CLICK, "complete"))
        await until(bob, "window.__xferReceived !== null")
        await until(ann, "window.__xferIdle !== null")
        received_at = float(await bob.evaluate("window.__xferReceived"))
        idle_at = float(await ann.evaluate("window.__xferIdle"))
        await asyncio.sleep(1)  # a second of Bob with the caller
        await bob.click("#sp-hangup")
        await bob.wait_for_selector("#softphone[data-call=idle]")
        result = await caller
        if not result.ok:
            raise RuntimeError(f"caller's call failed: {result}")
    finally:
        if not caller.done():
            caller.cancel()
    return {
        "consult_to_card_painted_ms": (painted_at - consult_at) * 1000,
        "consult_to_ring_ms": (rang_at - consult_at) * 1000,
        "complete_to_completed_ms": (received_at - complete_at) * 1000,
        "complete_to_agent_idle_ms": (idle_at - complete_at) * 1000,
    }


async def run(transfers: int, lab: AsteriskLab) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="ivr-transferbench-"))
    flows = data / "flows"
    flows.mkdir()
    (flows / "transfer_bench.yaml").write_text(FLOW)
    add_agent(data, "ann", "agent1001", ["billing"], PASSWORD, name="Ann Agent", phone="browser")
    add_agent(data, "bob", "agent1002", ["support"], PASSWORD, name="Bob Agent", phone="browser")
    env = {
        "IVR_FLOWS_DEFAULT": "transfer_bench",
        "IVR_AMI_SECRET": lab.ami_secret,
        "IVR_SPEECH_ENGINE": "off",
        "IVR_CALLBACKS_OFFER_AFTER": "-1",
        "IVR_DESKTOP_SOFTPHONE_WSS_URL": f"wss://127.0.0.1:{WSS_PORT}/ws",
    }
    controller = ControllerProcess(flows_dir=flows, data_dir=data, env=env, log_level="INFO")
    samples: list[dict[str, float]] = []
    failures: list[str] = []
    load_before = os.getloadavg()
    try:
        controller.start(timeout=30)
        controller.wait_for_log("AMI connected")
        port = int(re.findall(r"listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())[0])
        base = f"http://127.0.0.1:{port}"
        async with chromium(extra_args=WEBRTC_ARGS) as browser:
            ann = await sign_in(browser, base, "ann")
            bob = await sign_in(browser, base, "bob")
            for i in range(transfers):
                try:
                    samples.append(await one_transfer(ann, bob, i))
                except Exception as exc:  # counted and shown; the next transfer starts clean
                    failures.append(f"{i}: {type(exc).__name__}: {str(exc)[:200]}")
                    for page in (ann, bob):
                        if await page.get_attribute("#softphone", "data-call") != "idle":
                            await page.click("#sp-hangup")
    finally:
        controller.stop()
    keys = ["consult_to_card_painted_ms", "consult_to_ring_ms", "complete_to_completed_ms", "complete_to_agent_idle_ms"]
    return {
        "transfers": transfers,
        "completed": len(samples),
        "failed": len(failures),
        "failures": failures,
        "load_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        **{key: percentiles([s[key] for s in samples]) for key in keys},
        "raw": [{k: round(v, 1) for k, v in s.items()} for s in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transfers", type=int, default=20)
    args = parser.parse_args()
    with lab_session_lock():
        lab = AsteriskLab()
        lab.provision()
        lab.install_config()
        lab.stop()  # this checkout's config (http.conf, sorcery.conf, extensions.conf), whatever ran before
        lab.start()
        try:
            result = asyncio.run(run(args.transfers, lab))
        finally:
            lab.stop()
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"transfer-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
