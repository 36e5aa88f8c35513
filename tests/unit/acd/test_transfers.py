"""Agent transfers on the ACD, driven by literal AMI events with a real store and a recording AMI
(the socket's stand-in): an agent who received a caller by a transfer (a consult completed to them,
or a blind transfer to their phone) passes the caller on again from their own leg, and wraps up
once. The real Asterisk path runs in tests/integration/test_agent_transfer.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ivr.acd.service import Acd
from ivr.acd.topics import agent_topic
from ivr.ami import events as ev
from ivr.bus.pubsub import MemoryBus, Subscription
from ivr.flow.model import Journey
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine

ANN = {"id": "a1", "username": "ann", "display_name": "Ann", "endpoint": "agent1001", "skills": {"billing": 0}}
BOB = {"id": "a2", "username": "bob", "display_name": "Bob", "endpoint": "agent1002", "skills": {"support": 0}}
CAT = {"id": "a3", "username": "cat", "display_name": "Cat", "endpoint": "agent1003", "skills": {"support": 0}}
#: the queues Asterisk has loaded (what a transfer to a queue is checked against)
QUEUES = ("billing", "support", "main")
CALLER = ev.Channel("PJSIP/trunk-00000001", "1700000000.1", variables={"IVR_JOURNEY_ID": "j1"})
ANN_LEG = ev.Channel("PJSIP/agent1001-00000002", "1700000000.2")
BOB_LEG = ev.Channel("PJSIP/agent1002-00000003", "1700000000.3")
CAT_LEG = ev.Channel("PJSIP/agent1003-00000004", "1700000000.4")


class RecordingAmi:
    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.handlers: list[Any] = []

    def on_event(self, handler: Any) -> None:
        self.handlers.append(handler)

    def on_connected(self, handler: Any) -> None: ...

    async def action(self, action: dict[str, str]) -> dict[str, str]:
        self.sent.append(action)
        return {"Response": "Success"}

    async def queue_status(self, queue: str | None = None) -> list[ev.AmiEvent]:
        return [ev.QueueParams(0.0, q, 0, 0, 0, 0, 0) for q in QUEUES if queue in (None, q)]

    async def emit(self, event: ev.AmiEvent) -> None:
        for handler in self.handlers:
            await handler(event)

    def named(self, action: str) -> list[dict[str, str]]:
        return [a for a in self.sent if a["Action"] == action]


@dataclass
class Parts:
    acd: Acd
    ami: RecordingAmi
    bus: MemoryBus

    def status(self, agent_id: str) -> str:
        return self.acd.states[agent_id].status

    async def answered(self, leg: ev.Channel, transfer_id: str) -> None:
        """The dialplan's report from the target's channel (Dial's U() subroutine)."""
        await self.ami.emit(
            ev.UserEvent(time.time(), "IvrTransfer", leg, {"Transfer": transfer_id, "Status": "ANSWER"})
        )

    async def hangup(self, channel: ev.Channel) -> None:
        await self.ami.emit(ev.Hangup(time.time(), channel, 16, "Normal Clearing"))


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    """Ann, Bob and Cat ready; Ann talks to a caller app_queue gave her from "billing"."""
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    ami, bus = RecordingAmi(), MemoryBus()
    acd = Acd(ami=ami, journeys=journeys, customers=CustomerStore(journeys.engine), bus=bus)  # type: ignore[arg-type]
    journeys.save(Journey(id="j1", flow="xfer", version="1", channel="voice", caller="+15551237003"))
    await journeys.flush()
    for agent in (ANN, BOB, CAT):
        await acd.login(agent)
        await acd.ready(str(agent["id"]))
    now = time.time()
    await ami.emit(ev.QueueCallerJoin(now, "billing", CALLER, 1, 1))
    await ami.emit(ev.AgentCalled(now, "billing", "PJSIP/agent1001", "ann", CALLER, ANN_LEG))
    await ami.emit(ev.AgentConnect(now, "billing", "PJSIP/agent1001", CALLER, ANN_LEG, 3, 1))
    assert acd.states["a1"].status == "on_call"
    try:
        yield Parts(acd, ami, bus)
    finally:
        await acd.stop()
        await journeys.stop()


async def consult_completed_to_bob(parts: Parts) -> None:
    """Ann consults Bob, he answers, she completes: the caller and Bob's leg are bridged."""
    acd = parts.acd
    started = await acd.transfers.start("a1", journey_id="j1", kind="agent", value="bob", mode="consult", note="")
    await parts.answered(BOB_LEG, started["transfer_id"])
    await acd.transfers.complete("a1")
    await parts.hangup(ANN_LEG)
    assert (parts.status("a1"), parts.status("a2")) == ("wrap_up", "on_call")


async def drained(bus: MemoryBus, desktop: Subscription) -> list[dict[str, Any]]:
    """Every message the desktop got so far: read up to a marker published after them."""
    await bus.publish(desktop.topic, {"type": "test.mark"})
    out = []
    while (message := await desktop.get(1)) != {"type": "test.mark"}:
        out.append(message)
    return out


async def test_after_a_completed_consult_the_receiving_agent_transfers_the_caller_blind(parts: Parts) -> None:
    acd, ami = parts.acd, parts.ami
    await consult_completed_to_bob(parts)
    assert acd.states["a2"].call is not None and acd.states["a2"].call["agent_channel"] == BOB_LEG.name
    ami.sent.clear()
    async with parts.bus.subscribe(agent_topic("a2")) as bobs_desktop:
        await acd.transfers.start("a2", journey_id="j1", kind="queue", value="support", mode="blind", note="again")
        # the caller's channel carries where to go, and Bob's own leg is the transferer
        assert {a["Channel"] for a in ami.named("Setvar")} == {CALLER.name}
        assert ami.named("BlindTransfer") == [
            {"Action": "BlindTransfer", "Channel": BOB_LEG.name, "Context": "ivr-transfer", "Exten": "queue"}
        ]
        await parts.hangup(BOB_LEG)  # Asterisk hangs up the transferer's leg
        assert parts.status("a2") == "wrap_up"
        assert [m["type"] for m in await drained(parts.bus, bobs_desktop)].count("call.ended") == 1
    await acd.journeys.flush()
    entries = [e for e in await acd.journeys.interactions("j1") if e["kind"] == "agent_transfer"]
    assert [(e["data"]["agent"], e["data"]["outcome"]) for e in entries] == [
        ("Ann", "completed"),
        ("Bob", "transferred"),
    ]


async def test_after_a_completed_consult_the_receiving_agent_consults_a_third_and_wraps_up_once(
    parts: Parts,
) -> None:
    acd, ami = parts.acd, parts.ami
    await consult_completed_to_bob(parts)
    ami.sent.clear()
    async with parts.bus.subscribe(agent_topic("a2")) as bobs_desktop:
        started = await acd.transfers.start("a2", journey_id="j1", kind="agent", value="cat", mode="consult", note="")
        (redirect,) = ami.named("Redirect")
        assert (redirect["Channel"], redirect["Context"]) == (CALLER.name, "ivr-transfer-hold")
        assert (redirect["ExtraChannel"], redirect["ExtraExten"]) == (BOB_LEG.name, "consult-agent")
        assert {a["Channel"] for a in ami.named("Setvar")} == {BOB_LEG.name}
        await parts.answered(CAT_LEG, started["transfer_id"])
        assert acd.states["a3"].call is not None and acd.states["a3"].call["agent_channel"] == CAT_LEG.name
        await acd.transfers.complete("a2")
        assert ami.named("Bridge")[-1]["Channel2"] == CAT_LEG.name
        assert ami.named("Hangup")[-1]["Channel"] == BOB_LEG.name
        await parts.hangup(BOB_LEG)  # the hangup asked for by the completion: Bob is already done
        assert (parts.status("a2"), parts.status("a3")) == ("wrap_up", "on_call")
        assert [m["type"] for m in await drained(parts.bus, bobs_desktop)].count("call.ended") == 1


async def test_after_a_blind_transfer_to_their_phone_the_agent_consults_a_number(parts: Parts) -> None:
    acd, ami = parts.acd, parts.ami
    started = await acd.transfers.start("a1", journey_id="j1", kind="agent", value="bob", mode="blind", note="")
    assert ami.named("BlindTransfer")[-1]["Channel"] == ANN_LEG.name
    await ami.emit(ev.AgentComplete(time.time(), "billing", "PJSIP/agent1001", CALLER, 3, 20, "transfer"))
    await parts.answered(BOB_LEG, started["transfer_id"])
    assert (parts.status("a1"), parts.status("a2")) == ("wrap_up", "on_call")
    ami.sent.clear()
    await acd.transfers.start("a2", journey_id="j1", kind="number", value="+15551230999", mode="consult", note="")
    (redirect,) = ami.named("Redirect")
    assert (redirect["Channel"], redirect["ExtraChannel"]) == (CALLER.name, BOB_LEG.name)
    assert redirect["ExtraExten"] == "consult-number"
    await acd.transfers.cancel("a2")  # the number never answered: Bob takes the caller back
    assert ami.named("Bridge")[-1] == {
        "Action": "Bridge",
        "Channel1": CALLER.name,
        "Channel2": BOB_LEG.name,
        "Tone": "no",
    }
    await parts.hangup(CALLER)
    assert parts.status("a2") == "wrap_up"
