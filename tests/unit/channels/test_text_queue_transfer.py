"""The queue step's announcement and callback offer, and a transfer step, on a text channel: the
same engine steps rendered as words, with the real callback desk and store (SQLite)."""

from __future__ import annotations

from pathlib import Path

from ivr.acd.callbacks import Callbacks
from ivr.acd.service import Acd
from ivr.channels.chat import TRANSFER_REFUSED_TEXT, TextFlows
from ivr.flow.commands import CALLBACK_BOOKED_PROMPT, CALLBACK_OFFER_PROMPT
from ivr.flow.journey import Journey
from ivr.flow.loader import parse_flow
from ivr.flow.model import Flow, Menu
from ivr.store.agents import CallbackStore
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine

FLOW = """\
flow: q
start: {start}
steps:
  to_sales:
    transfer: {{to: "+15550100", timeout: 20, on_failure: to_billing}}
  to_billing:
    queue: {{name: billing, skill: billing}}
"""
QUEUE_ONLY = """\
flow: q
start: to_billing
steps:
  to_billing:
    queue: {name: billing, skill: billing}
"""


class One:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flow


async def test_chat_hears_its_place_and_books_a_callback(tmp_path: Path) -> None:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    try:
        acd = Acd(ami=None, journeys=journeys, customers=CustomerStore(journeys.engine))
        desk = Callbacks(acd, CallbackStore(journeys.engine), offer_after=120.0, handle_time=180.0)
        flow = parse_flow(QUEUE_ONLY, "q.yaml")
        chat = TextFlows("chat", One(flow), journeys, queue_desk=desk)
        journey = Journey.new(flow, "chat", caller="+15551230001")
        view = await chat.begin(journey)
        # nobody logged in: number 1, about 3 minutes (180 s), past the 120 s threshold
        assert view.messages[0] == "You are number 1 in line. The wait is about 3 minutes."
        assert isinstance(view.waiting, Menu) and view.messages[1] == CALLBACK_OFFER_PROMPT.text
        assert [c.label.text for c in view.waiting.choices] == ["call me back", "keep holding"]
        assert view.status == "active" and view.step == "to_billing"
        again = await chat.view(journey.id)  # a reload shows the same offer
        assert again is not None and isinstance(again.waiting, Menu)
        booked = await chat.answer(journey.id, "1")
        assert booked is not None and booked.messages == [CALLBACK_BOOKED_PROMPT.text]
        assert booked.status == "queued" and booked.done
        (row,) = await desk.store.waiting()
        assert row["phone"] == "+15551230001" and row["queue"] == "billing"
        saved = await journeys.get(journey.id)
        assert saved is not None and saved.outcome["callback"] == row["id"]
        assert saved.path == ["to_billing", "to_billing/callback_offer"]
    finally:
        await journeys.stop()


async def test_chat_refuses_a_transfer_plainly_and_takes_the_fallback(tmp_path: Path) -> None:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    try:
        flow = parse_flow(FLOW.format(start="to_sales"), "q.yaml")
        chat = TextFlows("chat", One(flow), journeys)  # no desk: no estimate, straight to the queue
        journey = Journey.new(flow, "chat")
        view = await chat.begin(journey)
        assert view.messages[0] == TRANSFER_REFUSED_TEXT
        assert view.queued is not None and view.queued.queue == "billing" and view.status == "queued"
        assert journey.path == ["to_sales", "to_billing"]
    finally:
        await journeys.stop()
