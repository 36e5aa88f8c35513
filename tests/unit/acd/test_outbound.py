"""Click-to-call: who may be dialled (pure), and the call's life on the ACD with a real store and a
recording AMI (the socket's stand-in): Originate to the agent's phone first, the card, the
timeline, ringing -> on call -> wrap-up from AMI's answers. The real Asterisk path runs in
tests/integration/test_click_to_call.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ivr.acd.outbound import NotDialable, Outbound, dialable, e164
from ivr.acd.service import Acd
from ivr.acd.topics import agent_topic
from ivr.ami import events as ev
from ivr.bus.pubsub import MemoryBus
from ivr.flow.model import Journey
from ivr.kpis import ReportRequest
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.kpis import KpiStore

ANN = {"id": "a1", "username": "ann", "display_name": "Ann", "endpoint": "agent1001", "skills": {"billing": 0}}
DANA = "+15551230005"


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("+1 555 123-0005", DANA),
        ("0015551230005", DANA),
        ("(+1) 555.123.0005", DANA),
        ("5551230005", None),
        ("+0155512300", None),
        ("+1555", None),
        ("", None),
        ("+1555123000512345", None),
    ],
)
def test_numbers_are_e164_or_nothing(raw: str, number: str | None) -> None:
    assert e164(raw) == number


def test_only_the_cards_numbers_or_allowed_prefixes_are_dialable() -> None:
    assert dialable("+1 555 123 0005", customers_numbers=[DANA]) == DANA
    with pytest.raises(NotDialable, match="only the numbers on the card"):
        dialable("+15559990000", customers_numbers=[DANA])
    assert dialable("+15559990000", typed_prefixes=["1555"]) == "+15559990000"
    with pytest.raises(NotDialable, match=r"nor one you may dial \(\+1555…\)"):
        dialable("+442071234567", customers_numbers=[DANA], typed_prefixes=["1555"])
    with pytest.raises(NotDialable, match="not a phone number"):
        dialable("call me", customers_numbers=[DANA])


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

    async def emit(self, event: ev.AmiEvent) -> None:
        for handler in self.handlers:
            await handler(event)


def status(acd: Acd) -> str:
    """Ann's status, read afresh (AMI events change it between reads)."""
    return acd.states["a1"].status


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[Acd, Outbound, RecordingAmi, MemoryBus, str]]:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    customers = CustomerStore(journeys.engine)
    ami, bus = RecordingAmi(), MemoryBus()
    acd = Acd(ami=ami, journeys=journeys, customers=customers, bus=bus)  # type: ignore[arg-type]
    outbound = Outbound(acd, caller_id="+15550100000", dial="PJSIP/{number}@trunk", typed_prefixes=("1555999",))
    customer = await customers.create(name="Dana Example", phones=[DANA], verified=True)
    # ann took Dana's inbound call earlier: that card is hers
    inbound = Journey(id="j-in", flow="desk", version="1", channel="voice", caller=DANA, customer_id=customer)
    journeys.save(inbound)
    await journeys.flush()
    await acd.login(ANN)
    state = acd.states["a1"]
    state.ringing({"uniqueid": "1.1", "journey_id": "j-in"})
    state.connected({"uniqueid": "1.1"})
    state.completed()
    ami.sent.clear()
    try:
        yield acd, outbound, ami, bus, customer
    finally:
        await acd.stop()
        await journeys.stop()


async def test_a_call_rings_the_agent_first_pops_the_card_and_follows_amis_answers(
    parts: tuple[Acd, Outbound, RecordingAmi, MemoryBus, str],
) -> None:
    acd, outbound, ami, bus, customer = parts
    async with bus.subscribe(agent_topic("a1")) as desktop:
        placed = await outbound.call("a1", "+1 (555) 123-0005", "j-in")
        originate = next(a for a in ami.sent if a["Action"] == "Originate")
        assert originate["Channel"] == "PJSIP/agent1001" and originate["Context"] == "ivr-outbound"
        assert f"IVR_OUTBOUND_DIAL=PJSIP/{DANA}@trunk" in originate["Variable"]
        assert "IVR_OUTBOUND_CALLERID=+15550100000" in originate["Variable"]
        assert any(a["Action"] == "QueuePause" and a["Paused"] == "true" for a in ami.sent[: ami.sent.index(originate)])
        messages = [await desktop.get(1) for _ in range(2)]
        pop = next(m for m in messages if m["type"] == "pop")["pop"]
        assert pop["direction"] == "outbound" and pop["customer"]["name"] == "Dana Example"
        assert pop["journey_id"] == placed["journey_id"] and pop["caller"] == DANA
        assert pop["timeline"][0]["words"] == f"Ann called the customer at {DANA}"
        assert status(acd) == "ringing"

        channel = ev.Channel("PJSIP/agent1001-00000007", "7.1", variables={"IVR_JOURNEY_ID": placed["journey_id"]})
        await ami.emit(ev.OriginateResponse(0.0, pop["uniqueid"], "Success", channel.name, "7.1", 4))
        assert status(acd) == "on_call"
        customer_leg = ev.Channel("PJSIP/trunk-00000008", "8.1")
        await ami.emit(ev.DialEnd(0.0, channel, customer_leg, "ANSWER"))
        await ami.emit(ev.Hangup(0.0, channel, 16, "Normal Clearing"))
        assert status(acd) == "wrap_up"
        # the agent may write notes on the call they made, as on one they answered
        await acd.finish("a1", journey_id=placed["journey_id"], disposition="resolved", notes="")
    await acd.journeys.flush()
    kinds = [e["kind"] for e in await acd.journeys.interactions(placed["journey_id"])]
    assert kinds == [
        "journey_started",
        "outbound_call",
        "outbound_answered",
        "agent_completed",
        "agent_disposition",
    ]
    journey = await acd.journeys.get(placed["journey_id"])
    assert journey is not None and journey.flow == "outbound" and journey.customer_id == customer
    # the KPIs tell it from the inbound contacts: its own row by flow
    now = time.time()
    report = await KpiStore(acd.journeys.engine).report_from_contacts(
        ReportRequest(start=now - 600, end=now + 60, by="flow")
    )
    assert [(r.key, r.figures.contacts) for r in report] == [("outbound", 1)]


async def test_refusals_dial_nothing(parts: tuple[Acd, Outbound, RecordingAmi, MemoryBus, str]) -> None:
    _, outbound, ami, _, _ = parts
    with pytest.raises(NotDialable, match=r"nor one you may dial \(\+1555999…\)"):
        await outbound.call("a1", "+15557770000", "j-in")
    with pytest.raises(PermissionError, match="not one of your contacts"):
        await outbound.call("a1", DANA, "someone-elses")
    with pytest.raises(NotDialable, match="not a phone number"):
        await outbound.call("a1", "5551230005", "j-in")
    outbound.caller_id = ""
    with pytest.raises(ValueError, match=r"outbound\.caller_id"):
        await outbound.call("a1", DANA, "j-in")
    assert ami.sent == []
    outbound.caller_id = "+15550100000"
    typed = await outbound.call("a1", "+15559990001")  # a typed number under an allowed prefix
    assert typed["number"] == "+15559990001"
    with pytest.raises(ValueError, match="finish the current call first"):
        await outbound.call("a1", DANA, "j-in")


async def test_an_agent_phone_that_does_not_answer_cancels_the_card(
    parts: tuple[Acd, Outbound, RecordingAmi, MemoryBus, str],
) -> None:
    acd, outbound, ami, _, _ = parts
    placed = await outbound.call("a1", DANA, "j-in")
    await ami.emit(ev.OriginateResponse(0.0, f"out-{placed['journey_id']}", "Failure", "", "", 3))
    assert status(acd) == "paused" and acd.states["a1"].reason == "outbound call failed"
    await acd.journeys.flush()
    kinds = [e["kind"] for e in await acd.journeys.interactions(placed["journey_id"])]
    assert kinds[-1] == "outbound_failed"
