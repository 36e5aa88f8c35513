"""The wallboard's rules with literal agent states and waiting callers, and its publisher on a
real in-process bus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ivr.acd.agents import AgentState, Contact
from ivr.acd.screenpop import build_pop
from ivr.acd.topics import WALLBOARD
from ivr.acd.wallboard import MAX_CALLERS, WallboardPublisher, caller_row, mask_number, snapshot
from ivr.bus.pubsub import MemoryBus
from ivr.flow.commands import QueueEstimate
from ivr.flow.library import FlowLibrary
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Continue, InputResult, Journey, Menu

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"
MONDAY_NOON = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # 12:00 in New York: the lines are open


def agent(agent_id: str, status: str, skills: dict[str, int], **fields: Any) -> AgentState:
    state = AgentState(agent_id, agent_id, agent_id.title(), f"ep-{agent_id}", skills, **fields)
    state.status = status  # type: ignore[assignment]
    return state


def test_queues_count_waiting_callers_the_longest_wait_and_agents_by_state() -> None:
    on_call = agent("bob", "on_call", {"billing": 0}, since=1000.0)
    on_call.call = {"uniqueid": "u1", "queue": "billing", "callerid": "+15551230001", "channel": "PJSIP/trunk-1"}
    on_call.contacts = [
        Contact("j0", "u0", "call", 900.0, ended_at=950.0),  # ended: not current
        Contact("j1", "u1", "call", 1000.0),
        Contact("j2", "c7", "chat", 1010.0),
    ]
    states = [
        agent("ann", "ready", {"billing": 0, "support": 1}, since=990.0),
        on_call,
        agent("cy", "paused", {"support": 0}, reason="lunch", since=980.0),
        agent("dee", "logged_out", {"billing": 0}),
    ]
    waiting = {
        "u5": {"queue": "billing", "joined_at": 1005.0, "callerid": "+15551230005"},
        "u6": {"queue": "billing", "joined_at": 1001.0, "callerid": "+15551230006"},
        "u7": {"queue": "outage", "joined_at": 1003.0, "callerid": "+15551230007"},
    }
    board = snapshot(states, waiting, ["main", "billing", "sales"])
    queues = {q["queue"]: q for q in board["queues"]}
    assert [q["queue"] for q in board["queues"]] == ["billing", "main", "outage", "sales", "support"]
    assert queues["billing"] == {
        "queue": "billing",
        "waiting": 2,
        "oldest_joined_at": 1001.0,
        "ready": 1,
        "busy": 1,
        "paused": 0,
    }
    assert queues["main"] == {
        "queue": "main",
        "waiting": 0,
        "oldest_joined_at": None,
        "ready": 1,
        "busy": 1,
        "paused": 1,
    }
    assert queues["support"]["ready"] == 1 and queues["support"]["paused"] == 1
    assert queues["outage"]["waiting"] == 1 and queues["sales"]["waiting"] == 0
    agents = {a["agent_id"]: a for a in board["agents"]}
    assert set(agents) == {"ann", "bob", "cy"}  # logged out: not on the board
    assert agents["bob"]["contacts"] == [
        {"channel": "call", "since": 1000.0, "queue": "billing"},
        {"channel": "chat", "since": 1010.0},
    ]
    assert (agents["cy"]["status"], agents["cy"]["reason"], agents["cy"]["since"]) == ("paused", "lunch", 980.0)
    assert "+1555" not in repr(board)  # no caller's number on a room display


def test_a_ringing_agent_shows_the_offered_call() -> None:
    ringing = agent("ann", "ringing", {"billing": 0}, since=1000.0)
    ringing.call = {"uniqueid": "u1", "queue": "billing"}
    (row,) = snapshot([ringing], {}, [])["agents"]
    assert row["contacts"] == [{"channel": "call", "since": 1000.0, "queue": "billing", "ringing": True}]


async def test_the_publisher_sends_changes_and_a_heartbeat_and_stops() -> None:
    bus = MemoryBus()
    await bus.start()
    states = [agent("ann", "ready", {"billing": 0}, since=1.0)]
    publisher = WallboardPublisher(bus, lambda: snapshot(states, {}, []), interval=0.01, heartbeat=0.3)
    async with bus.subscribe(WALLBOARD) as sub:
        await publisher.start()
        first = await sub.get(timeout=2)
        assert first["type"] == "wallboard" and first["agents"][0]["status"] == "ready"
        states[0].status = "paused"
        changed = await sub.get(timeout=2)
        assert changed["agents"][0]["status"] == "paused"
        published = publisher.published
        await asyncio.sleep(0.15)  # unchanged and within the heartbeat: nothing new
        assert publisher.published == published
        heartbeat = await sub.get(timeout=2)
        assert heartbeat["agents"] == changed["agents"] and heartbeat["at"] > changed["at"]
        await publisher.stop()
        count = publisher.published
        await asyncio.sleep(0.05)
        assert publisher.published == count
    await bus.stop()


def test_waiting_callers_show_their_ivr_context_with_masked_numbers_longest_first() -> None:
    waiting = {
        "u5": {"queue": "billing", "joined_at": 1005.0, "callerid": "+15551230005"},
        "u6": {"queue": "billing", "joined_at": 1001.0, "callerid": "+15551230006"},
        "u7": {"queue": "outage", "joined_at": 1003.0, "callerid": None},
    }
    contexts = {
        "u6": {
            "caller": "+15551230006",
            "customer": {"id": "c1", "name": "Ada Lovelace", "verified": True},
            "known_customer": True,
            "recognition": {"intent": "billing", "transcript": "my bill is wrong"},
            "choice": "pay_bill",
            "routing": {"reasons": ["gold tier: priority 5", "billing skill"]},
            "slots": [{"name": "account_number", "value": "12345678", "verified": True}],
        },
        "u5": {"customer": {}, "known_customer": False, "recognition": None, "path": ["main_menu", "outage_info"]},
    }
    board = snapshot([], waiting, ["billing"], contexts=contexts)
    assert board["callers_total"] == 3
    assert board["callers"] == [
        {
            "queue": "billing",
            "joined_at": 1001.0,
            "caller": "…0006",
            "intent": "billing",
            "verified": True,
            "known": True,
            "why": "pay_bill",
            "story": [],
            "context": True,
        },
        {
            "queue": "outage",
            "joined_at": 1003.0,
            "caller": "",
            "intent": None,
            "verified": False,
            "known": False,
            "why": "",
            "story": [],
            "context": False,  # its pop is still loading: shown, without context
        },
        {
            "queue": "billing",
            "joined_at": 1005.0,
            "caller": "…0005",
            "intent": None,
            "verified": False,
            "known": False,
            "why": "outage_info",
            "story": [],
            "context": True,
        },
    ]
    text = repr(board)
    assert "555123" not in text and "Ada" not in text and "12345678" not in text and "my bill" not in text


@pytest.mark.parametrize(
    ("number", "shown"),
    [("+15551230005", "…0005"), ("sip:0612@example", "…0612"), ("123", "…123"), ("anonymous", ""), (None, "")],
)
def test_a_number_shows_only_its_last_four_digits(number: object, shown: str) -> None:
    assert mask_number(number) == shown


def test_today_kpis_ride_in_the_snapshot() -> None:
    kpis = {"totals": {"offered": 3}}
    assert snapshot([], {}, [], kpis=kpis)["kpis"] == kpis
    assert "kpis" not in snapshot([], {}, [])


def big_centre(agents: int = 300, callers: int = 1000) -> tuple[list[AgentState], dict[str, dict[str, Any]]]:
    queues = ["billing", "support", "sales", "outage"]
    states = []
    for i in range(agents):
        state = agent(f"agent{i:03d}", ("ready", "on_call", "paused", "wrap_up")[i % 4], {queues[i % 4]: 0, "main": 1})
        state.since = 1000.0 + i
        states.append(state)
    waiting = {
        f"u{i}": {"queue": queues[i % 4], "joined_at": 1000.0 + i, "callerid": f"+1555{i:07d}"} for i in range(callers)
    }
    return states, waiting


async def test_300_agents_and_1000_callers_changing_every_few_ms_make_a_bounded_stream() -> None:
    """AMI events at a busy centre change the state hundreds of times a second; the board sends
    at most one message per interval (plus nothing more for a heartbeat), of a bounded size."""
    states, waiting = big_centre()
    contexts = {uid: {"recognition": {"intent": "billing"}, "customer": {"verified": True}} for uid in waiting}
    bus = MemoryBus()
    await bus.start()
    interval = 0.2
    publisher = WallboardPublisher(
        bus, lambda: snapshot(states, waiting, ["main"], contexts=contexts), interval=interval, heartbeat=5.0
    )
    changes = 0

    async def churn() -> None:  # an AMI event every 2 ms: an agent changes state, a caller joins
        nonlocal changes
        i = 0
        while True:
            states[i % len(states)].status = ("ready", "on_call", "paused")[i % 3]
            waiting[f"new{i}"] = {"queue": "billing", "joined_at": 2000.0 + i, "callerid": "+15550000000"}
            changes += 1
            i += 1
            await asyncio.sleep(0.002)

    sizes: list[int] = []
    async with bus.subscribe(WALLBOARD) as sub:
        churner = asyncio.create_task(churn())
        await publisher.start()
        started = time.monotonic()
        seconds = 2.0
        while time.monotonic() - started < seconds:
            with contextlib.suppress(TimeoutError):
                message = await sub.get(timeout=0.1)
                sizes.append(len(json.dumps(message)))
        churner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await churner
        await publisher.stop()
    await bus.stop()
    per_second = len(sizes) / seconds
    print(f"\n{changes} changes in {seconds:.0f} s -> {per_second:.1f} messages/s, largest {max(sizes)} bytes")
    assert changes > 10 * len(sizes)  # batched: many AMI events per message
    assert per_second <= 1 / interval + 1
    assert max(sizes) < 120_000  # 300 agents and the 50 longest waiting, whatever the queue's length
    last = json.loads(json.dumps(message))
    assert len(last["callers"]) == MAX_CALLERS and last["callers_total"] > 1000


def test_a_caller_who_keyed_an_option_shows_its_label_as_why_they_are_here() -> None:
    """The shipped support flow, option 1 by key, to the billing queue: the journey as the ACD
    reads it when the caller joins makes a pop whose "why" is the option as the menu words it,
    not the intent the option set (which has its own column)."""
    library = FlowLibrary(DIALPLANS)
    assert not library.reload().problems
    journey = Journey.new(library.get("support"), "voice", caller="+15551230001")
    machine = FlowMachine(library, journey, clock=lambda: MONDAY_NOON)
    machine.start()
    menu = machine.receive(Continue())[0]
    assert isinstance(menu, Menu) and menu.choices[0].key == "1"
    machine.receive(InputResult("match", "dtmf", "1"))
    machine.receive(InputResult("match", "dtmf", "12345678"))
    machine.receive(InputResult("match", "dtmf", "4321"))
    machine.receive(Continue())
    machine.receive(QueueEstimate(1, 0.0))
    assert journey.status == "queued" and journey.intent == "billing" and not journey.recognition
    pop = build_pop(journey.to_dict(), call={"uniqueid": "1.1", "queue": "billing", "called_at": 5.0})
    row = caller_row({"queue": "billing", "joined_at": 1.0, "callerid": "+15551230001"}, pop)
    assert (row["intent"], row["why"]) == ("billing", menu.choices[0].label.text)
    assert row["why"] != "billing"


def test_a_waiting_callers_story_is_worded_for_supervisors_masked() -> None:
    """The board's last timeline lines come from the wording module's supervisor audience: what the
    caller said and the numbers an agent dialled never reach the room display."""
    timeline: list[dict[str, Any]] = [
        {
            "at": "2026-12-03T10:42:00.000Z",
            "channel": "voice",
            "kind": "outbound_call",
            "journey_id": "j0",
            "step": None,
            "data": {"agent": "Ann", "to_number": "+15551230006"},
        },
        {
            "at": "2026-12-03T10:41:00.000Z",
            "channel": "voice",
            "kind": "intent_recognised",
            "journey_id": "j1",
            "step": "main",
            "data": {
                "utterance": "my name is Ada",
                "intent": "billing",
                "option": "pay_bill",
                "status": "match",
                "confidence": 0.9,
            },
        },
    ]
    pop = build_pop({"id": "j2"}, timeline=timeline, call={"uniqueid": "u1", "called_at": 1.0})
    row = caller_row({"queue": "billing", "joined_at": 1.0, "callerid": "+15551230006"}, pop)
    assert [line["words"] for line in row["story"]] == [
        "Ann called the customer at …0006",
        "Understood as 'billing', 90%",
    ]
    assert "Ada" not in repr(row) and "555123" not in repr(row)
    assert "Ada" in repr(pop["timeline"])  # the agent's card shows the transcript it already shows
