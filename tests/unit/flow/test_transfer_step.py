"""The ``transfer`` step: what the loader accepts as a destination (nothing that could inject
dialplan), what the engine does with each way a transfer ends, and the literal AGI commands
voice sends for it."""

from __future__ import annotations

from typing import cast

import pytest

from ivr.agi.protocol import Reply
from ivr.agi.server import AgiSession
from ivr.channels.voice import VoiceChannel, dial_string
from ivr.flow.commands import Fallback, Hangup, Play, Prompt, Queue, QueueEstimate, Transfer, TransferEnded
from ivr.flow.journey import Journey
from ivr.flow.loader import FlowLoadError, parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Flow
from ivr.flow.steps.transfer import TransferStep

FLOW = """\
flow: t
start: to_sales
steps:
  to_sales:
    transfer: {{to: {to}, timeout: 12, prompt: "Transferring you now."{extra}}}
  sorry:
    hangup: "Nobody could take your call. Goodbye."
"""


def flow(to: str = '"agent1002"', extra: str = ", on_failure: sorry") -> Flow:
    return parse_flow(FLOW.format(to=to, extra=extra), "t.yaml")


class One:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flow


@pytest.mark.parametrize("to", ['"agent1002"', '"+15551230100"', '"15551230100"', "5550100", '"sales-desk_2"'])
def test_numbers_and_extension_names_load(to: str) -> None:
    step = flow(to).steps["to_sales"]
    assert isinstance(step, TransferStep) and step.to == to.strip('"') and step.timeout == 12


@pytest.mark.parametrize(
    "to",
    [
        '"agent1002,60,D(1)"',  # a comma adds Dial arguments
        '"agent1002&PJSIP/agent1003"',  # & adds a channel
        '"agent|1002"',
        '"agent(1)"',
        '"agent1002\\nHangup"',
        '"PJSIP/agent1002"',
        '"+1555 0100"',
        '"+"',
        '""',
        "true",
        "[agent1002]",
    ],
)
def test_anything_that_could_inject_dialplan_is_refused_with_its_line(to: str) -> None:
    with pytest.raises(FlowLoadError) as info:
        flow(to)
    assert "t.yaml:5: to_sales: transfer 'to' must be a phone number" in str(info.value)


def test_bad_timeout_unknown_key_and_dangling_fallback_are_reported() -> None:
    with pytest.raises(FlowLoadError) as info:
        flow(extra=", on_failure: nowhere, timeout2: 3")
    text = str(info.value)
    assert "unknown key 'timeout2' in transfer" in text and "'nowhere' does not exist" in text
    with pytest.raises(FlowLoadError, match="timeout must be a whole number from 5 to 300"):
        parse_flow(FLOW.format(to='"agent1002"', extra=", on_failure: sorry").replace("12", "2"), "t.yaml")


def machine(f: Flow) -> tuple[FlowMachine, list[object]]:
    m = FlowMachine(One(f), Journey.new(f, "voice", caller="+15551230001"))
    return m, list(m.start())


def test_answered_completes_the_journey_as_transferred() -> None:
    m, first = machine(flow())
    assert first == [Play("to_sales", Prompt("Transferring you now.")), Transfer("to_sales", "agent1002", 12)]
    assert m.expecting == "result"
    assert m.receive(TransferEnded("answer", "PJSIP/agent1002")) == [Hangup("to_sales", "transferred")]
    assert m.journey.status == "completed" and m.journey.outcome == {"transferred": "agent1002"}
    assert [e.kind for e in m.take_events()][-2:] == ["transferred", "journey_completed"]


@pytest.mark.parametrize("status", ["busy", "noanswer", "congestion", "chanunavail", "unsupported", "failed"])
def test_nobody_answering_goes_to_the_fallback_step(status: str) -> None:
    m, _ = machine(flow())
    commands = m.receive(TransferEnded(status, "x"))  # type: ignore[arg-type]
    assert commands == [Play("sorry", Prompt("Nobody could take your call. Goodbye.")), Hangup("sorry", "flow")]
    assert m.journey.path == ["to_sales", "sorry"]
    failed = next(e for e in m.take_events() if e.kind == "transfer_failed")
    assert failed.data == {"to": "agent1002", "status": status, "detail": "x"}


def test_without_a_fallback_step_the_flow_fallback_then_the_dialplan_one() -> None:
    with_flow_fallback = parse_flow(
        FLOW.format(to='"agent1002"', extra="")
        .replace("start: to_sales", "start: to_sales\non_failure: queue_it")
        .replace(
            '  sorry:\n    hangup: "Nobody could take your call. Goodbye."\n', "  queue_it:\n    queue: {name: main}\n"
        ),
        "t.yaml",
    )
    m, _ = machine(with_flow_fallback)
    m.receive(TransferEnded("busy"))
    assert m.journey.step == "queue_it"
    assert [type(c) for c in m.receive(QueueEstimate(0, 0.0))] == [Queue]
    bare = parse_flow("flow: t\nstart: to_sales\nsteps:\n  to_sales:\n    transfer: {to: agent1002}\n", "t.yaml")
    m, _ = machine(bare)
    assert m.receive(TransferEnded("noanswer")) == [Fallback("to_sales", "transfer noanswer")]


def test_dial_strings() -> None:
    assert dial_string("agent1002", "PJSIP/{number}@trunk") == "PJSIP/agent1002"
    assert dial_string("+15551230100", "PJSIP/{number}@trunk") == "PJSIP/+15551230100@trunk"
    assert dial_string("5550100", "PJSIP/trunk/sip:{number}@127.0.0.1:5070") == "PJSIP/trunk/sip:5550100@127.0.0.1:5070"


class ScriptedSession:
    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[str, float | None]] = []

    async def command(self, line: str, *, timeout: float | None = None) -> Reply:
        self.sent.append((line, timeout))
        raw = self.replies.pop(0)
        result, _, rest = raw.removeprefix("200 result=").partition(" ")
        return Reply(200, result, rest[1:-1] if rest.startswith("(") else None, None, raw)


@pytest.mark.parametrize(
    ("dialstatus", "status"),
    [("ANSWER", "answer"), ("NOANSWER", "noanswer"), ("BUSY", "busy"), ("CHANUNAVAIL", "chanunavail")],
)
async def test_voice_dials_with_the_timeout_and_reads_dialstatus(dialstatus: str, status: str) -> None:
    session = ScriptedSession("200 result=0", f"200 result=1 ({dialstatus})")
    channel = VoiceChannel(cast(AgiSession, session), transfer_dial="PJSIP/{number}@trunk")
    ended = await channel.transfer(Transfer("to_sales", "+15551230100", 12))
    assert ended.status == status
    (dial, dial_timeout), (get, _) = session.sent
    assert dial == 'EXEC Dial "PJSIP/+15551230100@trunk,12"' and get == 'GET VARIABLE "DIALSTATUS"'
    assert dial_timeout is not None and dial_timeout > 12 + 3600  # the conversation runs inside Dial


async def test_an_unknown_dialstatus_is_a_failed_transfer() -> None:
    session = ScriptedSession("200 result=0", "200 result=0")
    ended = await VoiceChannel(cast(AgiSession, session)).transfer(Transfer("to_sales", "agent1002", 12))
    assert ended.status == "failed" and session.sent[0][0] == 'EXEC Dial "PJSIP/agent1002,12"'
