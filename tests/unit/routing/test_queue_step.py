"""The flow's queue step routes through ivr.routing: intent, tier and reasons reach the Queue command."""

from __future__ import annotations

from ivr.flow.commands import QueueEstimate
from ivr.flow.loader import parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Flow, InputResult, Journey, Queue

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
