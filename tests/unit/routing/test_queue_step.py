"""The flow's queue step routes through ivr.routing: intent, tier and reasons reach the Queue command."""

from __future__ import annotations

from datetime import UTC, datetime

from ivr.flow.commands import QueueEstimate
from ivr.flow.loader import parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Flow, InputResult, Journey, Queue
from ivr.routing.rules import RoutingRules

FLOW = """\
flow: routed
start: menu
steps:
  menu:
    menu:
      prompt: How can we help?
      options:
        bill:  {dtmf: "1", say: bill, intents: [billing], next: generic}
        other: {dtmf: "2", say: other, intents: [chit_chat], next: generic}
        vip:   {dtmf: "3", say: vip, next: named}
  generic:
    queue: {name: main, priority: 3}
  named:
    queue: {name: sales, priority: 1}
"""


class One:
    def __init__(self, flow: Flow) -> None:
        self.flow = flow

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flow


def queue_after(key: str, tier: str | None = None) -> tuple[Queue, Journey]:
    flow = parse_flow(FLOW, "routed.yaml")
    journey = Journey.new(flow, "voice", caller="+15551230001")
    journey.customer = {"tier": tier} if tier else {}
    machine = FlowMachine(One(flow), journey)
    machine.start()
    machine.receive(InputResult("match", "dtmf", key))
    commands = machine.receive(QueueEstimate(1, 0.0))  # an agent is free
    (queue,) = [c for c in commands if isinstance(c, Queue)]
    return queue, journey


def test_a_generic_queue_step_follows_the_intent_and_the_tier() -> None:
    queue, journey = queue_after("1", tier="gold")
    assert (queue.queue, queue.skill, queue.priority) == ("billing", "billing", 5)
    assert queue.variables["IVR_SKILL"] == "billing"
    assert journey.outcome["routing"]["reasons"] == [
        "intent billing (1.00) -> skill billing",
        "priority 3+2 for tier gold",
    ]


def test_no_known_intent_stays_in_main_and_a_named_queue_is_kept() -> None:
    queue, _ = queue_after("2")
    assert (queue.queue, queue.skill, queue.priority) == ("main", None, 3)
    queue, _ = queue_after("3")
    assert (queue.queue, queue.skill, queue.priority) == ("sales", "sales", 1)


HOURS_FLOW = """\
flow: hours
start: to_billing
hours:
  billing:
    timezone: America/New_York
    mon-fri: "08:00-18:00"
steps:
  to_billing:
    queue: {name: billing, skill: billing}
"""


def queue_at(now: datetime) -> Journey:
    flow = parse_flow(HOURS_FLOW, "hours.yaml")
    journey = Journey.new(flow, "voice", caller="+15551230001")
    machine = FlowMachine(One(flow), journey, clock=lambda: now)
    machine.start()
    machine.receive(QueueEstimate(1, 0.0))  # an agent is free: the step decides and joins
    return journey


def test_the_queue_step_tells_routing_whether_the_line_is_open_by_the_flow_calendar() -> None:
    closed = queue_at(datetime(2026, 11, 28, 15, 0, tzinfo=UTC))  # Saturday
    assert closed.outcome["routing"]["after_hours"] is True
    assert closed.outcome["routing"]["reasons"][-1] == "line closed: callback at opening time"
    opened = queue_at(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))  # Monday 10:00 in New York
    assert opened.outcome["routing"]["after_hours"] is False


def test_the_configured_routing_table_reaches_the_queue_step() -> None:
    flow = parse_flow(FLOW, "routed.yaml")
    journey = Journey.new(flow, "voice", caller="+15551230001")
    rules = RoutingRules(intent_skills={"billing": "sales"})
    machine = FlowMachine(One(flow), journey, routing=rules)
    machine.start()
    machine.receive(InputResult("match", "dtmf", "1"))
    (queue,) = [c for c in machine.receive(QueueEstimate(1, 0.0)) if isinstance(c, Queue)]
    assert (queue.queue, queue.skill) == ("sales", "sales")
