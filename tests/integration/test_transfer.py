"""Transfer steps on real calls: a SIPp caller is transferred through the trunk to a phone that
answers (a SIPp UAS), and to an agent extension that rings past the step's timeout, where the
caller reaches the fallback step. Asterisk 22 runs the Dial from the AGI session; its
DIALSTATUS comes back to the engine, which records the outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.sipp import CallerScript, run_caller_async
from lab.softphone import Softphone

ANSWERED_NUMBER = "5550192"
UNANSWERED_NUMBER = "5550193"
DESK_PHONE = "+15551239201"
FLOWS = {
    "xfer_out.yaml": f"""\
flow: xfer_out
numbers: ["{ANSWERED_NUMBER}"]
start: to_desk
steps:
  to_desk:
    transfer: {{to: "{DESK_PHONE}", timeout: 15, on_failure: sorry}}
  sorry:
    hangup: {{}}
""",
    "xfer_ext.yaml": f"""\
flow: xfer_ext
numbers: ["{UNANSWERED_NUMBER}"]
start: to_agent
steps:
  to_agent:
    transfer: {{to: agent1002, timeout: 5, on_failure: sorry}}
  sorry:
    hangup: {{}}
""",
}


@pytest.fixture
def flows_dir(tmp_path: Path) -> Iterator[Path]:
    flows = tmp_path / "flows"
    flows.mkdir()
    for name, text in FLOWS.items():
        (flows / name).write_text(text)
    yield flows


def journey_of(controller: ControllerProcess, caller: str, status: str) -> dict[str, Any]:
    return controller.wait_for_journey(lambda j: j["caller"] == caller and j["status"] == status, timeout=30)


async def test_a_caller_is_transferred_to_a_phone_that_answers(
    lab: AsteriskLab, flows_dir: Path, tmp_path: Path
) -> None:
    caller = "+15551239202"
    async with Softphone("desk", ring_ms=500, register=False) as desk:
        controller = ControllerProcess(
            flows_dir=flows_dir,
            data_dir=tmp_path / "ivr",
            env={
                "IVR_SPEECH_ENGINE": "off",
                # the lab has no carrier: the trunk endpoint dials the desk's SIPp directly
                "IVR_TRANSFER_DIAL": f"PJSIP/trunk/sip:{{number}}@127.0.0.1:{desk.port}",
            },
        )
        controller.start(timeout=30)
        try:
            # the caller talks to the desk for a few seconds, then hangs up (the desk never does)
            result = await run_caller_async(
                CallerScript(caller_id=caller, dialled=ANSWERED_NUMBER, hangup_after_ms=6000), timeout=40
            )
            result.raise_for_failure()
            assert result.who_hung_up == "caller"
            assert desk.invites() == 1
            journey = await asyncio.to_thread(journey_of, controller, caller, "completed")
            assert journey["outcome"] == {"transferred": DESK_PHONE}
            assert journey["path"] == ["to_desk"]
            kinds = [i["kind"] for i in controller.interactions(journey["id"])]
            assert "transferred" in kinds and "transfer_failed" not in kinds and "caller_left" not in kinds
        finally:
            controller.stop()


async def test_nobody_answering_sends_the_caller_to_the_fallback_step(
    lab: AsteriskLab, flows_dir: Path, tmp_path: Path
) -> None:
    caller = "+15551239203"
    # agent1002 rings for 30 s, longer than the step's 5 s: Dial gives up with NOANSWER
    async with Softphone("agent1002", lab.agent_passwords["agent1002"], ring_ms=30000) as agent:
        controller = ControllerProcess(flows_dir=flows_dir, data_dir=tmp_path / "ivr", env={"IVR_SPEECH_ENGINE": "off"})
        controller.start(timeout=30)
        try:
            result = await run_caller_async(
                CallerScript(caller_id=caller, dialled=UNANSWERED_NUMBER, max_call_ms=30000), timeout=40
            )
            result.raise_for_failure()
            assert result.who_hung_up == "ivr"  # the fallback step hangs up
            assert agent.invites() == 1
            journey = await asyncio.to_thread(journey_of, controller, caller, "completed")
            assert journey["path"] == ["to_agent", "sorry"]
            assert "transferred" not in journey["outcome"]
            failed = [i for i in controller.interactions(journey["id"]) if i["kind"] == "transfer_failed"]
            assert [f["data"]["status"] for f in failed] == ["noanswer"]
        finally:
            controller.stop()
