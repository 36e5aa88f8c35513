"""The browser softphone: ring vs screen pop, and answer to two-way audio (p50, p99 over N calls).

    .venv/bin/python bench/softphone.py [--calls 20]

One lab Asterisk 22 (restarted with this checkout's config), ``ivr serve`` as a child process
(AMI on, speech off), one agent whose phone is ``browser`` signed in to the desktop in a real
Chromium (fake microphone) and registered over WSS. SIPp callers arrive one after another straight
into queue "billing"; for each, the driver waits for the ring, answers in the page and polls the
call's ``getStats`` every 10 ms, hangs up from the page after 1 s and sets the agent ready again.

* **ring vs pop** = the INVITE's arrival in the page (JsSIP's newRTCSession) minus the frame with
  the card painted (``window.__ivrPops``): both on the page's clock. Negative: the pop came first.
* **answer to two-way audio** = from the answer (the 200 OK is built and sent) until the page's
  getStats shows audio RTP both received and sent. (Audio in the caller's ear is proven by the
  test, tests/integration/test_softphone.py, not timed here.)

Targets (issue: ring and pop within 100 ms, two-way audio under 1 s, p99). Raw numbers go to
bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from lab.agents import add_agent
from lab.asterisk import AsteriskLab
from lab.browser import WEBRTC_ARGS, chromium
from lab.controller import ControllerProcess
from lab.lock import lab_session_lock
from lab.sipp import CallerScript, run_caller_async

RESULTS = Path(__file__).resolve().parent / "results"
FLOW = """\
flow: softphone_bench
numbers: ["5550191"]
start: to_billing
steps:
  to_billing:
    queue: {name: billing, skill: billing, priority: 5}
"""
PASSWORD = "bench-password"
#: answer in the page, then poll the call's RTP counters until audio flows both ways (ms)
ANSWER_TO_AUDIO = """async () => {
  const t0 = performance.now();
  IvrSoftphone.answer();
  for (;;) {
    const s = await IvrSoftphone.stats();
    if (s.inbound > 0 && s.outbound > 0) return performance.now() - t0;
    if (performance.now() - t0 > 10000) return null;
    await new Promise((r) => setTimeout(r, 10));
  }
}"""


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": round(statistics.median(ordered), 1), "p99": round(q[98], 1), "max": round(ordered[-1], 1)}


async def run(calls: int, lab: AsteriskLab) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="ivr-softphonebench-"))
    flows = data / "flows"
    flows.mkdir()
    (flows / "softphone_bench.yaml").write_text(FLOW)
    add_agent(data, "ann", "agent1001", ["billing"], PASSWORD, phone="browser")
    env = {
        "IVR_FLOWS_DEFAULT": "softphone_bench",
        "IVR_AMI_SECRET": lab.ami_secret,
        "IVR_SPEECH_ENGINE": "off",
        "IVR_CALLBACKS_OFFER_AFTER": "-1",
    }
    controller = ControllerProcess(flows_dir=flows, data_dir=data, env=env, log_level="INFO")
    audio_ms: list[float] = []
    failed = 0
    try:
        controller.start(timeout=30)
        controller.wait_for_log("AMI connected")
        port = int(re.findall(r"listening on http://127\.0\.0\.1:(\d+)/", controller.log_path.read_text())[0])
        base = f"http://127.0.0.1:{port}"
        async with chromium(extra_args=WEBRTC_ARGS) as browser:
            context = await browser.new_context(ignore_https_errors=True)  # type: ignore[attr-defined]
            page = await context.new_page()
            await page.goto(f"{base}/desktop/login")
            await page.fill("#username", "ann")
            await page.fill("#password", PASSWORD)
            await page.click("#signin")
            await page.wait_for_selector("#softphone[data-reg=registered]", timeout=20000)
            for i in range(calls):
                await page.click("#btn-ready")
                await page.wait_for_selector("#status[data-status=ready]")
                caller = asyncio.create_task(
                    run_caller_async(
                        CallerScript(caller_id=f"+1555124{i:04d}", dialled="5550191", max_call_ms=20000), timeout=40
                    )
                )
                await page.wait_for_selector("#softphone[data-call=ringing]", timeout=20000)
                took = await page.evaluate(ANSWER_TO_AUDIO)
                if took is None:
                    failed += 1
                else:
                    audio_ms.append(float(took))
                await asyncio.sleep(1)  # a second of conversation
                await page.click("#sp-hangup")
                await page.wait_for_selector("#softphone[data-call=idle]")
                result = await caller
                if not result.ok:
                    failed += 1
            rings, pops = await page.evaluate("[window.__ivrRings, window.__ivrPops]")
    finally:
        controller.stop()
    gaps = [(ring["at"] - pop["painted_at"]) * 1000 for ring, pop in zip(rings, pops, strict=False)]
    return {
        "calls": calls,
        "failed": failed,
        "rings": len(rings),
        "pops": len(pops),
        "ring_minus_pop_ms": percentiles(gaps),
        "ring_vs_pop_abs_ms": percentiles([abs(g) for g in gaps]),
        "answer_to_two_way_audio_ms": percentiles(audio_ms),
        "raw": {
            "ring_minus_pop_ms": [round(g, 1) for g in gaps],
            "answer_to_audio_ms": [round(a, 1) for a in audio_ms],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with lab_session_lock():
        lab = AsteriskLab()
        lab.provision()
        lab.install_config()
        lab.stop()  # this checkout's config (http.conf, sorcery.conf), whatever ran before
        lab.start()
        try:
            result = asyncio.run(run(args.calls, lab))
        finally:
            lab.stop()
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"softphone-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
