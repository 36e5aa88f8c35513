"""The flow machine: ``receive(event) -> list[Command]``. Pure: it never awaits and never does I/O.

A channel drives it::

    commands = machine.start()       # or machine.resume(channel, via=...) for a journey picked up
    while machine.expecting != "nothing":
        event = await channel.execute(commands)   # Continue, InputResult, HandoffResult, a ServiceResult or CallerLeft
        commands = machine.receive(event)

What the journey waits for is saved with it (``Journey.waiting``), so a machine built later from
the saved journey (a chat reply, a page reload) takes the answer without being told.

Why it stops after every step that speaks: the journey's ``step`` then always names what the
caller is hearing, so a hangup is recorded at the right step and a resumed journey starts there.
Steps that only decide (branch, goto, invoke, return) run straight through, bounded by
``MAX_HOPS`` so a loop in a flow file becomes a fallback, not a spinning call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from ivr.errors import FlowError
from ivr.flow.commands import CallbackBooked, QueueEstimate, TransferEnded
from ivr.flow.conditions import ConditionScope
from ivr.flow.model import (
    CallerLeft,
    Command,
    Continue,
    Event,
    Fallback,
    Flow,
    Frame,
    HandoffResult,
    Hangup,
    InputResult,
    Interaction,
    Journey,
    JourneyStatus,
    Prompt,
    Waiting,
)
from ivr.flow.personalize import DEFAULT_HALF_LIFE
from ivr.flow.profile import CallerProfile
from ivr.flow.stages import JourneyStage, journey_stage
from ivr.flow.steps import End, EnterFlow, Goto, MenuStep, Outcome, Return, Step, Wait
from ivr.flow.system import CONTINUE_OFFER, SYSTEM_FLOW, SYSTEM_FLOWS, SYSTEM_VERSION, is_system
from ivr.routing.rules import RoutingRules

log = logging.getLogger(__name__)
MAX_HOPS = 100
#: Stages worth a line in the interaction log when a journey starts (the rest are the norm).
NOTABLE_STAGES = frozenset({"open_callback", "open_continuation", "unfinished", "recent_contact"})


class FlowSource(Protocol):
    """Where the machine finds flows: ``version=None`` means the current version."""

    def get(self, name: str, version: str | None = None) -> Flow: ...


#: ``result``: the step waits for a service the channel runs for it (``ServiceResult``).
Expecting = Literal["continue", "input", "result", "nothing"]


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
        holdout: float = 0.0,
    ) -> None:
        """``profile``: what the store knew about the caller when the journey (re)started; it
        ranks personalized menus and offers known values to ``prefill`` asks. ``half_life``:
        seconds after which a past menu choice weighs half (see ``ivr.flow.personalize``).
        ``routing``: the centre's routing table from the configuration (None: the defaults).
        ``holdout``: the share of known callers whose menus keep the file's order, to measure
        what personalization does (``ivr.flow.personalize.in_holdout``)."""
        if half_life <= 0:
            raise ValueError(f"half_life must be positive, got {half_life}")
        if not 0.0 <= holdout <= 1.0:
            raise ValueError(f"holdout must be a share between 0 and 1, got {holdout}")
        self.flows = flows
        self.journey = journey
        self.profile = profile
        self.half_life = half_life
        self.holdout = holdout
        self.routing = routing or RoutingRules()
        self.resuming = False
        self._resume_at: str | None = None  # the saved step a resumed journey re-enters
        self._clock = clock or (lambda: datetime.now(UTC))
        if profile is not None and journey.customer_id is None:
            journey.customer_id = profile.customer_id
            journey.customer = journey.customer or dict(profile.fields)
        self.flow: Flow = self._lookup(journey.flow, journey.version)
        self._events: list[Interaction] = []
        self._stage: JourneyStage | None = None

    @property
    def stage(self) -> JourneyStage:
        """Where the caller is in their journey (``ivr.flow.stages``), as of the first question:
        computed once per machine from the profile, so every condition and prompt of a call
        agrees on "ten minutes ago"."""
        if self._stage is None:
            self._stage = journey_stage(self.profile, self.now(), self._reason)
        return self._stage

    def _reason(self, flow: str, intent: str) -> tuple[str, str] | None:
        """The first menu option of ``flow`` (its current version) that ``intent`` belongs to."""
        try:
            found = self.flows.get(flow)
        except KeyError:
            return None
        for step in found.steps.values():
            if isinstance(step, MenuStep):
                for option in step.options:
                    if intent in option.intents or intent == option.id:
                        return option.id, option.label.text
        return None

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
            journey=self.stage,
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

    @property
    def expecting(self) -> Expecting:
        """What the journey waits for: read from the saved journey, set only by the machine."""
        waiting = self.journey.waiting
        return waiting.expect if waiting is not None else "nothing"

    def start(self) -> list[Command]:
        """Begin (or resume) at the journey's step; a new journey begins at the flow's start."""
        self.record("journey_started" if not self.journey.path else "journey_resumed", flow=self.flow.name)
        if not self.journey.path and self.stage.stage in NOTABLE_STAGES:
            self.record("journey_stage", stage=self.stage.stage, why=self.stage.why)
        # A resumed journey re-enters its saved step: a menu there keeps the keys already spoken.
        if self.journey.path and self.journey.step:
            self._resume_at = self.journey.step
        target = self.journey.step or self.flow.start
        return self._guard(lambda: self._run(Goto(target)))

    def resume(
        self,
        channel: str,
        *,
        via: str,
        step: str | None = None,
        refs: Mapping[str, str] | None = None,
        offer: bool = False,
    ) -> list[Command]:
        """Pick the journey up on ``channel`` at the step it waits at (``step``: the caller's own
        record of it, when that may be newer than the saved journey) and record the change once.

        ``via`` says how the customer came back ("link", "call me", "caller id"); ``refs`` are the
        new channel's references (call id, ...). The journey re-enters its step as it was saved:
        a menu keeps the keys already spoken, every slot stays collected. ``offer``: first ask
        whether to continue at all (the system step ``continue_offer``); a caller who starts over
        ends this journey (``ivr.flow.system.started_over``).
        """
        j = self.journey
        self._leave_system_flows()  # saved while an offer was waiting: back to its own step
        target = step or (j.waiting.step if j.waiting is not None else j.step)
        if target is None:
            raise FlowError(f"journey {j.id} has no step to resume at")
        previous = j.channel
        j.step, j.channel, j.status, j.outcome, j.waiting = target, channel, "active", {}, None
        if refs:
            j.refs = {**j.refs, **refs}
        self.record("channel_changed", **{"from": previous, "to": channel, "via": via})
        self.record("journey_resumed", flow=self.flow.name)
        self._resume_at = target
        if offer:
            return self._guard(lambda: self._run(self._enter_system(CONTINUE_OFFER, return_to=target)))
        return self._guard(lambda: self._run(Goto(target)))

    def question(self) -> Command | None:
        """The question the journey waits at, rendered again; enters nothing, records nothing.

        None when it waits for no answer, or when the answer pending is a spoken read-back (a
        text channel cannot answer it: the caller is asked the menu again).
        """
        j = self.journey
        step = self.current_step
        if step is None or j.waiting is None or j.waiting.expect != "input" or j.waiting.step != step.name:
            return None
        if j.confirming and j.confirming.get("step") == step.name:
            return None
        return step.question(self)

    def fail(self, reason: str) -> list[Command]:
        """A channel could not do what the journey asked: the journey fails and the channel takes
        its safe path (the ``Fallback`` returned), as for a broken flow."""
        return self._guard(lambda: self._raise(FlowError(reason)))

    def receive(self, event: Event) -> list[Command]:
        if isinstance(event, CallerLeft):
            self.journey.waiting = None
            self._leave_system_flows()
            if self.journey.status == "active":
                self._finish("abandoned")
                self.record("caller_left", reason=event.reason)
            return []
        step = self.current_step
        if step is None or self.expecting == "nothing":
            raise FlowError(f"journey {self.journey.id} is not waiting for {type(event).__name__}")
        if isinstance(event, Continue):
            if self.expecting != "continue":
                raise FlowError(f"step {step.name} is waiting for input, not Continue")
            return self._guard(lambda: self._run(step.on_continue(self)))
        if isinstance(event, QueueEstimate | CallbackBooked | TransferEnded):
            if self.expecting != "result":
                raise FlowError(f"step {step.name} is not waiting for {type(event).__name__}")
            return self._guard(lambda: self._run(step.on_result(self, event)))
        if self.expecting != "input":
            raise FlowError(f"step {step.name} takes no {type(event).__name__}")
        if isinstance(event, InputResult):
            return self._guard(lambda: self._run(step.on_input(self, event)))
        if isinstance(event, HandoffResult):
            return self._guard(lambda: self._run(step.on_handoff(self, event)))
        raise FlowError(f"unknown event {event!r}")

    # ------------------------------------------------------------------------------ internals
    def _guard(self, run: Callable[[], list[Command]]) -> list[Command]:
        """A broken flow (loop, missing flow) must end in the channel's safe path, never a crash."""
        try:
            return run()
        except FlowError as exc:
            log.error("journey %s failed at %s: %s", self.journey.id, self.journey.step, exc)
            self.record("flow_error", error=str(exc))
            self.journey.waiting = None
            self._leave_system_flows()
            self._finish("failed")
            self.journey.outcome = {"fallback": str(exc)}
            return [Fallback(self.journey.step, str(exc))]

    @staticmethod
    def _raise(exc: FlowError) -> list[Command]:
        raise exc

    def _lookup(self, name: str, version: str | None) -> Flow:
        """A flow by name: the engine's own system flows by their version, the rest from ``flows``."""
        if version == SYSTEM_VERSION:
            return SYSTEM_FLOWS[name]
        return self.flows.get(name, version)

    def _leave_system_flows(self) -> None:
        """A journey never rests inside a system flow: back to the step of its own flow that
        entered it, so a later resume (or the record of a hangup) names the journey's own step."""
        while is_system(self.flow) and self.journey.stack:
            frame = self.journey.stack.pop()
            self.flow = self._lookup(frame.flow, frame.version)
            self.journey.flow, self.journey.version = self.flow.name, self.flow.version
            self.journey.step = frame.return_to
            self.journey.waiting = None  # it waited at the system step: its own step is entered again

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
        self.resuming = name == self._resume_at and not is_system(self.flow)
        if self.resuming:
            self._resume_at = None
        try:
            return step.enter(self)
        finally:
            self.resuming = False

    def _enter_system(self, step: str, *, return_to: str) -> Outcome:
        """Run a step of the system flow as an invoked sub-flow that comes back to ``return_to``."""
        self.journey.stack.append(Frame(self.flow.name, self.flow.version, return_to))
        self._switch(SYSTEM_FLOW, SYSTEM_VERSION)
        self.record("flow_entered", flow=SYSTEM_FLOW, returns=True)
        return Goto(step)

    def _switch(self, flow_name: str, version: str | None) -> None:
        try:
            self.flow = self._lookup(flow_name, version)
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
                assert self.journey.step is not None  # set by _enter before any step can wait
                self.journey.waiting = Waiting(self.journey.step, outcome.expect)
                return outcome.commands
            elif isinstance(outcome, End):
                self.journey.waiting = None
                self._leave_system_flows()
                self._finish(outcome.status)
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
