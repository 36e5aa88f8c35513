"""The flow machine driven by scripted events, with the shipped flows and small literal flows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.flow.commands import EstimateWait, QueueEstimate
from ivr.flow.library import FlowLibrary
from ivr.flow.loader import parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import (
    Ask,
    CallerLeft,
    Command,
    Continue,
    Fallback,
    Flow,
    Hangup,
    InputResult,
    Journey,
    Menu,
    Play,
    Queue,
)

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"
MONDAY_NOON = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # 12:00 in New York


class Flows:
    def __init__(self, *flows: Flow) -> None:
        self.flows = {f.name: f for f in flows}

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flows[name]


def dtmf(key: str) -> InputResult:
    return InputResult("match", "dtmf", key)


def played(command: Command) -> str:
    """The text of a Play command (any other command fails the test)."""
    assert isinstance(command, Play), command
    return command.prompt.text


def start(library: FlowLibrary | Flows, flow: str, when: datetime = MONDAY_NOON) -> tuple[FlowMachine, list[Command]]:
    journey = Journey.new(library.get(flow), "voice", caller="+15551230001")
    machine = FlowMachine(library, journey, clock=lambda: when)
    return machine, machine.start()


@pytest.fixture
def library() -> FlowLibrary:
    lib = FlowLibrary(DIALPLANS)
    report = lib.reload()
    assert not report.problems
    return lib


def test_support_pay_bill_path_to_billing_queue(library: FlowLibrary) -> None:
    m, cmds = start(library, "support")
    assert [type(c) for c in cmds] == [Play] and played(cmds[0]) == "Welcome to Example Power."
    cmds = m.receive(Continue())
    assert isinstance(cmds[0], Menu) and [c.key for c in cmds[0].choices] == ["1", "2", "0"]
    cmds = m.receive(dtmf("1"))
    assert isinstance(cmds[0], Ask) and cmds[0].slot == "account_number" and cmds[0].max_digits == 8
    cmds = m.receive(InputResult("match", "dtmf", "12345678"))
    assert isinstance(cmds[0], Ask) and cmds[0].slot == "pin"  # entered the verify_identity sub-flow
    cmds = m.receive(InputResult("match", "dtmf", "4321"))
    assert isinstance(cmds[0], Play) and played(cmds[0]) == "Thank you, you are verified."
    cmds = m.receive(Continue())
    assert [type(c) for c in cmds] == [Play, EstimateWait]  # "please hold", then the queue desk
    cmds = m.receive(QueueEstimate(1, 0.0))  # an agent is free: straight through
    assert [type(c) for c in cmds] == [Queue]
    queue = cmds[0]
    assert isinstance(queue, Queue)
    assert queue.queue == "billing" and queue.priority == 5
    assert queue.variables["IVR_SLOT_ACCOUNT_NUMBER"] == "12345678"
    assert queue.variables["IVR_PATH"] == (
        "greeting>check_hours>main_menu>account>verify>verify_identity.ask_pin>verify_identity.verified"
        ">verify_identity.done>to_billing"
    )
    assert queue.variables["IVR_INTENT"] == "billing"
    assert m.journey.status == "queued" and m.expecting == "nothing"
    kinds = [e.kind for e in m.take_events()]
    assert kinds.count("step_entered") == 9 and "option_chosen" in kinds and kinds[-2:] == ["queued", "journey_queued"]


def test_menu_retries_then_failure_target(library: FlowLibrary) -> None:
    m, _ = start(library, "support")
    m.receive(Continue())
    cmds = m.receive(dtmf("7"))
    assert isinstance(cmds[0], Play) and played(cmds[0]) == "Sorry, that is not a valid choice."
    assert isinstance(cmds[1], Menu) and cmds[1].attempt == 2
    cmds = m.receive(InputResult("noinput", "dtmf"))
    assert isinstance(cmds[0], Play) and played(cmds[0]) == "Sorry, I did not hear your choice."
    assert isinstance(cmds[1], Menu) and cmds[1].attempt == 3
    cmds = m.receive(dtmf("9"))
    assert [type(c) for c in cmds] == [Play, EstimateWait] and isinstance(cmds[1], EstimateWait)
    assert cmds[1].queue == "main"
    cmds = m.receive(QueueEstimate(1, 0.0))
    assert [type(c) for c in cmds] == [Queue] and isinstance(cmds[0], Queue) and cmds[0].queue == "main"
    assert m.journey.path[-1] == "to_agent"


def test_speech_interpretation_matches_intent(library: FlowLibrary) -> None:
    m, _ = start(library, "support")
    m.receive(Continue())
    cmds = m.receive(InputResult("match", "speech", "my power is out", interpretation="outage", confidence=0.8))
    assert isinstance(cmds[0], Play) and m.journey.step == "outage_info" and m.journey.intent == "outage"


def test_ask_rejects_wrong_length_and_keeps_slot_empty(library: FlowLibrary) -> None:
    m, _ = start(library, "support")
    m.receive(Continue())
    m.receive(dtmf("1"))
    cmds = m.receive(InputResult("match", "dtmf", "123"))
    assert isinstance(cmds[0], Play) and played(cmds[0]) == "Sorry, that number is not valid."
    assert isinstance(cmds[1], Ask)
    assert "account_number" not in m.journey.slots


def test_closed_hours_branch() -> None:
    flow = parse_flow(
        """
flow: h
start: b
hours:
  office: {timezone: Europe/London, mon-fri: "09:00-17:00", closed: ["2026-12-25"]}
steps:
  b:
    branch:
      when:
        - if: open("office") and caller == "+15551230001"
          next: open_msg
      else: closed_msg
  open_msg: {say: We are open., next: end}
  closed_msg: {say: We are closed., next: end}
  end: {hangup: {}}
""",
        "h.yaml",
    )
    flows = Flows(flow)
    _, cmds = start(flows, "h", datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    assert played(cmds[0]) == "We are open."
    _, cmds = start(flows, "h", datetime(2026, 11, 23, 18, 0, tzinfo=UTC))
    assert played(cmds[0]) == "We are closed."
    _, cmds = start(flows, "h", datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    assert played(cmds[0]) == "We are closed."


def test_hangup_mid_step_is_abandoned_at_that_step(library: FlowLibrary) -> None:
    m, _ = start(library, "support")
    m.receive(Continue())
    assert m.receive(CallerLeft()) == []
    assert m.journey.status == "abandoned" and m.journey.step == "main_menu"
    assert m.take_events()[-1].kind == "caller_left"


def test_resume_at_saved_step(library: FlowLibrary) -> None:
    m, _ = start(library, "support")
    m.receive(Continue())
    m.receive(dtmf("1"))
    saved = Journey.from_dict(m.journey.to_dict())
    saved.status = "active"
    resumed = FlowMachine(library, saved, clock=lambda: MONDAY_NOON)
    cmds = resumed.start()
    assert isinstance(cmds[0], Ask) and cmds[0].slot == "account_number"


def test_loop_without_input_becomes_fallback() -> None:
    # ``ivr check`` refuses a loop inside one flow; one that crosses flows is stopped at run time
    flow = parse_flow("flow: l\nstart: a\nsteps:\n  a: {goto: {flow: m}}\n", "l.yaml")
    other = parse_flow("flow: m\nstart: a\nsteps:\n  a: {goto: {flow: l}}\n", "m.yaml")
    m, cmds = start(Flows(flow, other), "l")
    assert isinstance(cmds[0], Fallback) and "loop" in cmds[0].reason
    assert m.journey.status == "failed"


def test_missing_invoked_flow_becomes_fallback() -> None:
    flow = parse_flow("flow: l\nstart: a\nsteps:\n  a: {invoke: ghost, next: b}\n  b: {hangup: {}}\n", "l.yaml")
    _, cmds = start(Flows(flow), "l")
    assert isinstance(cmds[0], Fallback) and "ghost" in cmds[0].reason


def test_end_of_flow_hangs_up_as_completed() -> None:
    flow = parse_flow("flow: e\nstart: a\nsteps:\n  a: {say: Bye.}\n", "e.yaml")
    m, _ = start(Flows(flow), "e")
    cmds = m.receive(Continue())
    assert isinstance(cmds[0], Hangup) and m.journey.status == "completed"


def test_running_journey_keeps_its_version_after_reload(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("flow: v\nstart: a\nsteps:\n  a: {say: Old words., next: b}\n  b: {say: Old end.}\n")
    lib = FlowLibrary(tmp_path)
    lib.reload()
    m, cmds = start(lib, "v")
    assert played(cmds[0]) == "Old words."
    path.write_text("flow: v\nstart: a\nsteps:\n  a: {say: New words., next: b}\n  b: {say: New end.}\n")
    import os

    os.utime(path, ns=(1, 1))
    report = lib.reload()
    assert report.loaded and lib.get("v").steps["a"].prompt.text == "New words."  # type: ignore[attr-defined]
    (end, *_) = m.receive(Continue())
    assert isinstance(end, Play) and end.prompt.text == "Old end."
    _, fresh = start(lib, "v")
    assert played(fresh[0]) == "New words."


def test_broken_edit_keeps_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("flow: v\nstart: a\nsteps:\n  a: {say: Good.}\n")
    lib = FlowLibrary(tmp_path)
    lib.reload()
    good = lib.get("v").version
    path.write_text("flow: v\nstart: a\nsteps:\n  a: {sya: Broken.}\n")
    os_times = (2, 2)
    import os

    os.utime(path, ns=os_times)
    report = lib.reload()
    assert report.kept == ["v"] and report.problems
    assert lib.get("v").version == good


def test_secret_slot_is_never_persisted_nor_carried(library: FlowLibrary) -> None:
    m, _ = start(library, "support")
    m.receive(Continue())
    m.receive(dtmf("1"))
    m.receive(InputResult("match", "dtmf", "12345678"))
    m.receive(InputResult("match", "dtmf", "4321"))
    assert m.journey.slots["pin"] == "4321"  # usable during the call
    assert m.journey.persisted()["slots"] == {"account_number": "12345678", "pin": "[redacted]"}
    m.receive(Continue())
    cmds = m.receive(QueueEstimate(1, 0.0))
    assert isinstance(cmds[-1], Queue)
    assert not any("4321" in v for v in cmds[-1].variables.values())
