"""Voice: flow commands -> AGI commands on one call, and the inbound call handler.

Why menus are spoken from fragments ("For" + label + "press" + digit): personalization reorders
options and renumbers keys per caller, so a pre-recorded "for billing press 1" would lie. Each
fragment is one STREAM FILE with every DTMF key as an escape digit, so the caller can barge in at
any moment; digits come from Asterisk's own ``digits/N`` recordings.

What the dialplan sees when the AGI session ends is the ``IVR_ACTION`` channel variable:
``queue`` (with ``IVR_QUEUE``, ``QUEUE_PRIO`` and inherited ``__IVR_*`` journey variables),
``hangup``, or ``fallback``. Anything else, including no value at all because the controller
died, sends the call down the dialplan's fallback path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime

from ivr.agi import commands as agi
from ivr.agi.server import AgiSession
from ivr.errors import CallEnded, ChannelError
from ivr.flow.machine import FlowMachine, FlowSource
from ivr.flow.model import (
    FOR_PROMPT,
    PRESS_PROMPT,
    Ask,
    CallerLeft,
    Command,
    Continue,
    Event,
    Fallback,
    Flow,
    Hangup,
    InputResult,
    Journey,
    Menu,
    Play,
    Prompt,
    Queue,
)
from ivr.store.journeys import JourneyStore

log = logging.getLogger(__name__)
ESCAPE_ALL = "0123456789*#"
DIGIT_FILES = {**{d: f"digits/{d}" for d in "0123456789"}, "*": "digits/star", "#": "digits/pound"}

# Channel variable names shared with extensions.conf: keep them in one place.
VAR_ACTION = "IVR_ACTION"
VAR_QUEUE = "IVR_QUEUE"
VAR_QUEUE_TIMEOUT = "IVR_QUEUE_TIMEOUT"
VAR_QUEUE_PRIO = "QUEUE_PRIO"


def normalise_number(raw: str) -> str | None:
    """Caller id as E.164-ish digits ('+15551230001'); None for anonymous/unknown."""
    digits = re.sub(r"[^\d+]", "", raw or "")
    if not digits or digits in ("+",) or raw.lower() in ("unknown", "anonymous"):
        return None
    return digits


class VoiceChannel:
    """Executes one batch of flow commands; returns the event for the machine, or None when done."""

    def __init__(self, session: AgiSession, prefix: str = "ivr") -> None:
        self.session = session
        self.prefix = prefix

    async def execute(self, commands: list[Command]) -> Event | None:
        for command in commands:
            if isinstance(command, Play):
                await self._stream(command.prompt.audio_name(self.prefix), "")
            elif isinstance(command, Menu):
                return await self.menu(command)
            elif isinstance(command, Ask):
                return await self.ask(command)
            elif isinstance(command, Queue):
                await self.queue(command)
                return None
            elif isinstance(command, Hangup):
                await self.session.set_variable(VAR_ACTION, "hangup")
                return None
            elif isinstance(command, Fallback):
                await self.session.set_variable(VAR_ACTION, "fallback")
                return None
            else:
                raise ChannelError(f"voice cannot render {type(command).__name__}")
        return Continue()

    async def _stream(self, name: str, escape: str) -> str | None:
        """Play one file; a file Asterisk cannot play is logged and skipped, the call goes on."""
        reply = await self.session.command(agi.stream_file(name, escape))
        if reply.result_int < 0:
            # The session already turned a real hangup into CallEnded; -1 on a live channel means
            # the file could not be opened (missing prompt): degrade, do not drop the caller.
            log.error("cannot play sound file %s (run 'ivr prompts build'?): %s", name, reply.raw)
            return None
        return agi.digit_from_reply(reply)

    async def menu(self, menu: Menu) -> InputResult:
        fragments: list[str] = [menu.prompt.audio_name(self.prefix)]
        for choice in menu.choices:
            fragments += [
                FOR_PROMPT.audio_name(self.prefix),
                choice.label.audio_name(self.prefix),
                PRESS_PROMPT.audio_name(self.prefix),
                DIGIT_FILES[choice.key],
            ]
        for name in fragments:
            digit = await self._stream(name, ESCAPE_ALL)
            if digit:
                return InputResult("match", "dtmf", digit)
        reply = await self.session.command(agi.wait_for_digit(int(menu.timeout * 1000)))
        digit = agi.digit_from_reply(reply) if reply.result_int > 0 else None
        return InputResult("match", "dtmf", digit) if digit else InputResult("noinput", "dtmf")

    async def ask(self, ask: Ask) -> InputResult:
        reply = await self.session.command(
            agi.get_data(ask.prompt.audio_name(self.prefix), int(ask.timeout * 1000), ask.max_digits)
        )
        if reply.result_int < 0:  # the prompt could not be played; the caller can still type
            log.error("GET DATA failed for %s: %s", ask.prompt.audio_name(self.prefix), reply.raw)
            return InputResult("noinput", "dtmf")
        digits, _timed_out = agi.get_data_digits(reply)
        digits = digits.rstrip(ask.terminator)
        return InputResult("match", "dtmf", digits) if digits else InputResult("noinput", "dtmf")

    async def queue(self, queue: Queue) -> None:
        for name, value in queue.variables.items():
            await self.session.set_variable(f"__{name}", value)  # '__': inherited by the agent's leg
        await self.session.set_variable(VAR_QUEUE, queue.queue)
        await self.session.set_variable(VAR_QUEUE_PRIO, str(queue.priority))
        await self.session.set_variable(VAR_QUEUE_TIMEOUT, str(queue.timeout))
        await self.session.set_variable(VAR_ACTION, "queue")


class InboundCalls:
    """The ``inbound`` AGI route: pick a flow, run its machine over the call, save every step."""

    def __init__(
        self,
        flows: FlowSource,
        pick_flow: Callable[[str | None, str], Flow],
        store: JourneyStore,
        *,
        prefix: str = "ivr",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.flows = flows
        self.pick_flow = pick_flow
        self.store = store
        self.prefix = prefix
        self.clock = clock
        self.calls = 0
        self.finished: dict[str, int] = {}

    async def __call__(self, session: AgiSession) -> None:
        env = session.env
        flow = self.pick_flow(env.params.get("flow"), env.dnid if env.dnid not in ("", "unknown") else env.extension)
        journey = Journey.new(flow, "voice", caller=normalise_number(env.callerid))
        journey.refs = {"uniqueid": env.uniqueid, "channel": env.channel, "dnis": env.extension}
        self.calls += 1
        await self.run(session, journey)

    async def run(self, session: AgiSession, journey: Journey) -> None:
        machine = FlowMachine(self.flows, journey, clock=self.clock)
        channel = VoiceChannel(session, self.prefix)
        try:
            commands = machine.start()
            self.store.save(journey, machine.take_events())
            while True:
                event = await channel.execute(commands)
                if event is None:
                    break
                commands = machine.receive(event)
                self.store.save(journey, machine.take_events())
        except CallEnded:
            machine.receive(CallerLeft())
            self.store.save(journey, machine.take_events())
            log.info("caller left at step %s of %s (journey %s)", journey.step, journey.flow, journey.id)
            raise
        except BaseException as exc:
            journey.status = "failed"
            journey.outcome = {"fallback": f"{type(exc).__name__}: {exc}"}
            machine.record("journey_failed", error=str(exc))
            self.store.save(journey, machine.take_events())
            raise
        finally:
            self.finished[journey.status] = self.finished.get(journey.status, 0) + 1
        log.debug("journey %s ended %s at %s", journey.id, journey.status, journey.step)


__all__ = ["InboundCalls", "Prompt", "VoiceChannel", "normalise_number"]
