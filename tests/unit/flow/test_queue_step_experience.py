"""The queue step's announcement and callback offer, in the engine: literal estimates in, the
commands, the journey (path, outcome) and the interactions out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ivr.flow.commands import (
    CALLBACK_BOOKED_PROMPT,
    CALLBACK_OFFER_PROMPT,
    AnnounceQueue,
    BookCallback,
    CallbackBooked,
    EstimateWait,
    Hangup,
    InputResult,
    Menu,
    Play,
    Queue,
    QueueEstimate,
)
from ivr.flow.journey import Journey
from ivr.flow.loader import FlowLoadError, parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Flow

FLOW = """\
flow: q
start: to_billing
steps:
  to_billing:
    queue: {{name: billing, skill: billing, priority: 5{extra}}}
"""
AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class One:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flow


def machine(extra: str = "", caller: str | None = "+15551230001") -> tuple[FlowMachine, list[object]]:
    flow = parse_flow(FLOW.format(extra=extra), "q.yaml")
    m = FlowMachine(One(flow), Journey.new(flow, "voice", caller=caller), clock=lambda: AT)
    return m, list(m.start())


def kinds(m: FlowMachine) -> list[str]:
    return [e.kind for e in m.take_events()]


def test_the_step_asks_the_desk_and_an_agent_free_goes_straight_through() -> None:
    m, first = machine()
    assert first == [EstimateWait("to_billing", "billing", "billing")] and m.expecting == "result"
    commands = m.receive(QueueEstimate(1, 0.0, 120.0, can_book=True))
    assert [type(c) for c in commands] == [Queue]
    assert m.journey.status == "queued" and m.journey.path == ["to_billing"]
    assert "queue_announced" not in kinds(m)


def test_a_wait_below_the_threshold_is_announced_then_the_caller_joins() -> None:
    m, _ = machine()
    commands = m.receive(QueueEstimate(4, 360.0, 600.0, can_book=True))
    assert commands[0] == AnnounceQueue("to_billing", 4, 6)
    assert isinstance(commands[1], Queue) and len(commands) == 2
    events = m.take_events()
    announced = next(e for e in events if e.kind == "queue_announced")
    assert announced.data == {"position": 4, "eta_s": 360.0, "callback_offered": False}
    assert announced.at == AT.timestamp()  # the machine's clock, not the channel's
    assert [e.kind for e in events][-2:] == ["queued", "journey_queued"]


def test_past_the_threshold_a_yes_books_a_callback_and_the_call_ends_with_the_ticket() -> None:
    m, _ = machine()
    commands = m.receive(QueueEstimate(4, 360.0, 120.0, can_book=True))
    assert commands[0] == AnnounceQueue("to_billing", 4, 6)
    offer = commands[1]
    assert isinstance(offer, Menu) and offer.prompt == CALLBACK_OFFER_PROMPT and not offer.speak_choices
    assert [c.key for c in offer.choices] == ["1", "2"] and m.expecting == "input"
    assert m.journey.path == ["to_billing", "to_billing/callback_offer"]
    assert m.journey.queue_wait == {"step": "to_billing", "position": 4, "eta_s": 360.0}
    (book,) = m.receive(InputResult("match", "dtmf", "1"))
    assert isinstance(book, BookCallback) and book.queue.queue == "billing" and book.queue.priority == 5
    assert str(m.expecting) == "result"  # str(): mypy keeps the narrowing of the earlier "input" check
    commands = m.receive(CallbackBooked("t-1"))
    assert commands == [Play("to_billing", CALLBACK_BOOKED_PROMPT), Hangup("to_billing", "callback booked")]
    assert m.journey.status == "queued" and m.journey.outcome["callback"] == "t-1"
    assert m.journey.outcome["queue"] == "billing" and m.journey.queue_wait is None
    story = kinds(m)
    assert story.index("queue_announced") < story.index("callback_requested")
    assert "queued" not in story  # a booked callback never joined the queue


@pytest.mark.parametrize("answer", [InputResult("match", "dtmf", "2"), InputResult("noinput", "dtmf")])
def test_no_or_silence_keeps_the_caller_holding(answer: InputResult) -> None:
    m, _ = machine()
    m.receive(QueueEstimate(4, 360.0, 120.0, can_book=True))
    commands = m.receive(answer)
    assert [type(c) for c in commands] == [Queue] and m.journey.status == "queued"
    assert "callback_declined" in kinds(m) and "callback" not in m.journey.outcome


def test_a_refused_booking_joins_the_queue() -> None:
    m, _ = machine()
    m.receive(QueueEstimate(4, 360.0, 120.0, can_book=True))
    m.receive(InputResult("match", "text", "call me back", "callback"))
    commands = m.receive(CallbackBooked(None, "already booked"))
    assert [type(c) for c in commands] == [Queue]
    events = m.take_events()
    assert next(e for e in events if e.kind == "callback_refused").data == {"why": "already booked"}


def test_no_offer_without_a_number_a_desk_that_books_or_a_threshold() -> None:
    for estimate, caller in (
        (QueueEstimate(4, 360.0, 120.0, can_book=True), None),
        (QueueEstimate(4, 360.0, 120.0, can_book=False), "+15551230001"),
        (QueueEstimate(4, 360.0, None, can_book=True), "+15551230001"),
    ):
        m, _ = machine(caller=caller)
        commands = m.receive(estimate)
        assert [type(c) for c in commands] == [AnnounceQueue, Queue]


def test_step_options_override_the_desk() -> None:
    m, _ = machine(", callback_after: 600")
    assert [type(c) for c in m.receive(QueueEstimate(4, 360.0, 120.0, can_book=True))] == [AnnounceQueue, Queue]
    m, _ = machine(", callback_after: 60")
    assert [type(c) for c in m.receive(QueueEstimate(4, 360.0, None, can_book=True))] == [AnnounceQueue, Menu]
    m, _ = machine(", announce: false")
    assert [type(c) for c in m.receive(QueueEstimate(4, 360.0, 120.0, can_book=True))] == [Menu]
    assert "queue_estimated" in kinds(m)
    m, first = machine(", announce: false, callback_after: false")
    assert [type(c) for c in first] == [Queue]  # nothing to ask the desk


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (", announce: 1", "announce must be true or false"),
        (", callback_after: true", "callback_after must be a number of seconds"),
        (", callback_after: -5", "callback_after must be a number from 0.0 to 86400.0"),
    ],
)
def test_bad_options_are_reported_with_their_line(extra: str, message: str) -> None:
    with pytest.raises(FlowLoadError) as info:
        parse_flow(FLOW.format(extra=extra), "q.yaml")
    assert message in str(info.value) and "q.yaml:5" in str(info.value)
