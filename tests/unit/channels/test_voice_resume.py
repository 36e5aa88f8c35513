"""The inbound route with a returning caller: the engine's welcome-back step on a scripted AGI
session and a real (SQLite) journey store. 1 continues the open journey, 2 starts a new one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from ivr.agi.protocol import AgiEnvironment, Reply
from ivr.agi.server import AgiSession
from ivr.channels.voice import InboundCalls
from ivr.errors import CallEnded
from ivr.flow.library import FlowLibrary
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Continue, HandoffResult, InputResult, Journey
from ivr.flow.profile import CallerProfile
from ivr.store.journeys import JourneyStore, make_engine

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"
CALLER = "+15551230001"
READ = 'EXEC Read "IVR_MENU_KEY,ivr/'


class ScriptedSession:
    """Replies in order; the caller hangs up when the script runs out."""

    def __init__(self, *replies: str) -> None:
        self.env = AgiEnvironment(
            {
                "agi_network_script": "inbound",
                "agi_callerid": CALLER,
                "agi_extension": "5550200",
                "agi_dnid": "5550200",
                "agi_uniqueid": "1700000000.9",
                "agi_channel": "PJSIP/trunk-00000009",
            }
        )
        self.replies = list(replies)
        self.sent: list[str] = []

    async def command(self, line: str) -> Reply:
        self.sent.append(line)
        if not self.replies:
            raise CallEnded("hangup")
        raw = self.replies.pop(0)
        result, _, rest = raw.removeprefix("200 result=").partition(" ")
        return Reply(200, result, rest[1:-1] if rest.startswith("(") else None, None, raw)

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f'SET VARIABLE {name} "{value}"')


class Profiles:
    async def load(self, phone: str | None) -> CallerProfile | None:
        return CallerProfile("c1") if phone == CALLER else None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JourneyStore]:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"), batch_delay=0.001)
    await journeys.start()
    try:
        yield journeys
    finally:
        await journeys.stop()


def flows() -> FlowLibrary:
    library = FlowLibrary(DIALPLANS)
    library.reload()
    return library


def handed_off(library: FlowLibrary) -> Journey:
    journey = Journey.new(library.get("payments"), "voice", caller=CALLER)
    journey.customer_id = "c1"
    machine = FlowMachine(library, journey)
    machine.start()
    machine.receive(Continue())
    machine.receive(InputResult("match", "dtmf", "12345678"))
    machine.receive(InputResult("match", "dtmf", "8"))
    machine.receive(HandoffResult(True, "accepted"))
    return journey


def inbound(library: FlowLibrary, store: JourneyStore, open_id: str) -> InboundCalls:
    calls = InboundCalls(library, lambda _f, _d: library.get("payments"), store, profiles=Profiles())

    async def open_journeys(customer: str) -> str | None:
        return open_id if customer == "c1" else None

    calls.open_journeys = open_journeys
    return calls


async def test_1_continues_the_open_journey_at_its_menu(store: JourneyStore) -> None:
    library = flows()
    previous = handed_off(library)
    store.save(previous)
    session = ScriptedSession("200 result=0", "200 result=1 (1)")  # the offer: Read, then its key
    with pytest.raises(CallEnded):  # hangs up at the payment menu
        await inbound(library, store, previous.id)(cast(AgiSession, session))
    assert session.sent[0].startswith(READ + "welcome-back-you-can-continue")
    assert session.sent[2].startswith(READ + "how-would-you-like-to-pay")
    await store.flush()
    saved = await store.get(previous.id)
    assert saved is not None and saved.channel == "voice" and saved.refs["uniqueid"] == "1700000000.9"
    assert saved.path[-3:] == ["text_me", "system.continue_offer", "pay_menu"]
    assert (saved.status, saved.step, saved.slots) == ("abandoned", "pay_menu", {"account_number": "12345678"})
    kinds = [(e["kind"], e["data"]) for e in await store.interactions(previous.id)]
    assert [d for k, d in kinds if k == "channel_changed"] == [{"from": "voice", "to": "voice", "via": "caller id"}]
    assert [d["choice"] for k, d in kinds if k == "continue_offer_answered"] == ["continue"]
    assert [j.id for j in await store.recent() if j.caller == CALLER] == [previous.id]  # no journey of its own


async def test_2_starts_over_with_a_new_journey(store: JourneyStore) -> None:
    library = flows()
    previous = handed_off(library)
    store.save(previous)
    session = ScriptedSession("200 result=0", "200 result=1 (2)", "200 result=0 endpos=8000")
    with pytest.raises(CallEnded):  # hangs up at the account number of the new journey
        await inbound(library, store, previous.id)(cast(AgiSession, session))
    assert session.sent[2].startswith('STREAM FILE "ivr/example-power-payments')
    await store.flush()
    saved = await store.get(previous.id)
    assert saved is not None and (saved.status, saved.step, saved.flow) == ("abandoned", "pay_menu", "payments")
    assert saved.outcome == {"started_over": True}
    fresh = [j for j in await store.recent() if j.caller == CALLER and j.id != previous.id]
    assert len(fresh) == 1 and fresh[0].path == ["greeting", "account"] and fresh[0].customer_id == "c1"
