"""The flow machine: ``receive(event) -> list[Command]``. Pure: it never awaits and never does I/O.

A channel drives it::

    commands = machine.start()
    while machine.expecting != "nothing":
        event = await channel.execute(commands)   # Continue, InputResult or CallerLeft
        commands = machine.receive(event)

Why it stops after every step that speaks: the journey's ``step`` then always names what the
caller is hearing, so a hangup is recorded at the right step and a resumed journey starts there.
Steps that only decide (branch, goto, invoke, return) run straight through, bounded by
``MAX_HOPS`` so a loop in a flow file becomes a fallback, not a spinning call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from ivr.errors import FlowError
from ivr.flow.conditions import ConditionScope
from ivr.flow.model import (
    CallerLeft,
    Command,
    Continue,
    Event,
    Fallback,
    Flow,
    Frame,
    Hangup,
    InputResult,
    Interaction,
    Journey,
    JourneyStatus,
    Prompt,
)
from ivr.flow.personalize import DEFAULT_HALF_LIFE
from ivr.flow.profile import CallerProfile
from ivr.flow.steps import End, EnterFlow, Goto, Outcome, Return, Step, Wait
from ivr.routing.rules import RoutingRules

log = logging.getLogger(__name__)
MAX_HOPS = 100


class FlowSource(Protocol):
    """Where the machine finds flows: ``version=None`` means the current version."""

    def get(self, name: str, version: str | None = None) -> Flow: ...


Expecting = Literal["continue", "input", "nothing"]


class FlowMachine:
    def __init__(
        self,
        flows: FlowSource,
        journey: Journey,
        *,
        clock: Callable[[], datetime] | None = None,
        profile: CallerProfile | None = None,
        half_life: float = DEFAULT_HALF_LIFE,
        routing: RoutingRules | None = None,
    ) -> None:
        """``profile``: what the store knew about the caller when the journey (re)started; it
        ranks personalized menus and offers known values to ``prefill`` asks. ``half_life``:
        seconds after which a past menu choice weighs half (see ``ivr.flow.personalize``).
        ``routing``: the centre's routing table from the configuration (None: the defaults)."""
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        self.flows = flows
        self.journey = journey
        self.profile = profile
        self.half_life = half_life
        self.routing = routing or RoutingRules()
        self.resuming = False
        self._clock = clock or (lambda: datetime.now(UTC))
        if profile is not None and journey.customer_id is None:
            journey.customer_id = profile.customer_id
            journey.customer = journey.customer or dict(profile.fields)
        self.flow: Flow = flows.get(journey.flow, journey.version)
        self.expecting: Expecting = "nothing"
        self._events: list[Interaction] = []

    # ------------------------------------------------------------------------------ Runtime API
    def now(self) -> datetime:
        return self._clock()

    def scope(self) -> ConditionScope:
        j = self.journey
        return ConditionScope(
            slots=j.slots,
            customer=j.customer,
            caller=j.caller,
            channel=j.channel,
            intent=j.intent,
            now=self.now(),
            is_open=self._is_open,
        )

    def record(self, kind: str, /, **data: Any) -> None:
        self._events.append(Interaction(kind, self.journey.step, data, self.now().timestamp()))

    def text(self, key: str) -> Prompt:
        return Prompt(self.flow.texts[key])

    def _is_open(self, calendar: str, now: datetime) -> bool:
        hours = self.flow.hours.get(calendar)
        return hours.is_open(now) if hours else False

    # ------------------------------------------------------------------------------ public API
    def take_events(self) -> list[Interaction]:
        """Interactions recorded since the last call, for the append-only log."""
        events, self._events = self._events, []
        return events

    @property
    def current_step(self) -> Step | None:
        return self.flow.steps.get(self.journey.step) if self.journey.step else None

    def start(self) -> list[Command]:
        """Begin (or resume) at the journey's step; a new journey begins at the flow's start."""
        self.record("journey_started" if not self.journey.path else "journey_resumed", flow=self.flow.name)
        # A resumed journey re-enters its saved step: a menu there keeps the keys already spoken.
        self.resuming = bool(self.journey.path and self.journey.step)
        target = self.journey.step or self.flow.start
        return self._guard(lambda: self._run(Goto(target)))

    def receive(self, event: Event) -> list[Command]:
        if isinstance(event, CallerLeft):
            if self.journey.status == "active":
                self._finish("abandoned")
                self.record("caller_left", reason=event.reason)
            self.expecting = "nothing"
            return []
        step = self.current_step
        if step is None or self.expecting == "nothing":
            raise FlowError(f"journey {self.journey.id} is not waiting for {type(event).__name__}")
        if isinstance(event, Continue):
            if self.expecting != "continue":
                raise FlowError(f"step {step.name} is waiting for input, not Continue")
            return self._guard(lambda: self._run(step.on_continue(self)))
        if isinstance(event, InputResult):
            if self.expecting != "input":
                raise FlowError(f"step {step.name} takes no input")
            return self._guard(lambda: self._run(step.on_input(self, event)))
        raise FlowError(f"unknown event {event!r}")

    # ------------------------------------------------------------------------------ internals
    def _guard(self, run: Callable[[], list[Command]]) -> list[Command]:
        """A broken flow (loop, missing flow) must end in the channel's safe path, never a crash."""
        try:
            return run()
        except FlowError as exc:
            log.error("journey %s failed at %s: %s", self.journey.id, self.journey.step, exc)
            self.record("flow_error", error=str(exc))
            self._finish("failed")
            self.journey.outcome = {"fallback": str(exc)}
            self.expecting = "nothing"
            return [Fallback(self.journey.step, str(exc))]

    def _enter(self, name: str) -> Outcome:
        step = self.flow.steps.get(name)
        if step is None:
            raise FlowError(f"flow {self.flow.name} has no step {name!r}")
        j = self.journey
        j.step = name
        j.attempts = 0
        j.path.append(name if not j.stack else f"{self.flow.name}.{name}")
        j.updated_at = time.time()
        self.record("step_entered", kind=step.KIND)
        try:
            return step.enter(self)
        finally:
            self.resuming = False

    def _switch(self, flow_name: str, version: str | None) -> None:
        try:
            self.flow = self.flows.get(flow_name, version)
        except KeyError:
            raise FlowError(f"flow {flow_name!r} is not loaded") from None
        self.journey.flow = self.flow.name
        self.journey.version = self.flow.version

    def _run(self, outcome: Outcome) -> list[Command]:
        for _ in range(MAX_HOPS):
            if isinstance(outcome, Goto):
                if outcome.target is None:
                    outcome = self._end_of_flow()
                    continue
                outcome = self._enter(outcome.target)
            elif isinstance(outcome, Wait):
                self.expecting = outcome.expect
                return outcome.commands
            elif isinstance(outcome, End):
                self._finish(outcome.status)
                self.expecting = "nothing"
                return outcome.commands
            elif isinstance(outcome, EnterFlow):
                if outcome.returns:
                    self.journey.stack.append(Frame(self.flow.name, self.flow.version, outcome.return_to))
                self._switch(outcome.flow, None)
                self.record("flow_entered", flow=self.flow.name, returns=outcome.returns)
                outcome = Goto(outcome.step or self.flow.start)
            elif isinstance(outcome, Return):
                outcome = self._end_of_flow()
        raise FlowError(f"more than {MAX_HOPS} steps without input: is there a loop near {self.journey.step!r}?")

    def _end_of_flow(self) -> Outcome:
        if self.journey.stack:
            frame = self.journey.stack.pop()
            self._switch(frame.flow, frame.version)
            self.record("flow_returned", flow=frame.flow)
            return Goto(frame.return_to)
        return End([Hangup(self.journey.step, "end of flow")], "completed")

    def _finish(self, status: JourneyStatus) -> None:
        self.journey.status = status
        self.journey.updated_at = time.time()
        self.record("journey_" + status)
