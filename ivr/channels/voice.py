"""Voice: flow commands -> AGI commands on one call, and the inbound call handler.

Why menus are spoken from fragments ("For" + label + "press" + digit): personalization reorders
options and renumbers keys per caller, so a pre-recorded "for billing press 1" would lie. Each
fragment is one STREAM FILE with every DTMF key as an escape digit, so the caller can barge in at
any moment; digits come from Asterisk's own ``digits/N`` recordings.

With a recognizer (``speech``, see ``ivr/speech/service.py``) a menu also listens: the same
fragments are played over an AudioSocket while the caller may speak or press; if speech fails the
menu is played again the way described above, and the call stays on keys.

What the dialplan sees when the AGI session ends is the ``IVR_ACTION`` channel variable:
``queue`` (with ``IVR_QUEUE``, ``QUEUE_PRIO`` and inherited ``__IVR_*`` journey variables),
``hangup``, or ``fallback``. Anything else, including no value at all because the controller
died, sends the call down the dialplan's fallback path.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Literal, Protocol

from ivr.agi import commands as agi
from ivr.agi import variables as var
from ivr.agi.server import AgiSession
from ivr.aio import wait_for
from ivr.channels import queuedesk
from ivr.channels.queuedesk import QueueDesk
from ivr.channels.rendering import cannot_render
from ivr.errors import CallEnded, CannotRender
from ivr.flow.commands import (
    AnnounceQueue,
    BookCallback,
    CallbackBooked,
    EstimateWait,
    QueueEstimate,
    Transfer,
    TransferEnded,
    TransferStatus,
)
from ivr.flow.machine import FlowMachine, FlowSource
from ivr.flow.model import (
    FOR_PROMPT,
    OFFER_ACCEPT_KEY,
    OFFER_CHOICE_PROMPT,
    PRESS_PROMPT,
    QUEUE_MINUTES_PROMPT,
    QUEUE_POSITION_PROMPT,
    QUEUE_WAIT_PROMPT,
    SPEECH_BUSY_PROMPT,
    Ask,
    CallerLeft,
    Command,
    Continue,
    Event,
    Fallback,
    Flow,
    Handoff,
    HandoffResult,
    Hangup,
    InputResult,
    Journey,
    Menu,
    Play,
    Prompt,
    Queue,
)
from ivr.flow.personalize import DEFAULT_HALF_LIFE
from ivr.flow.profile import CallerProfile
from ivr.flow.steps.transfer import TRANSFER_NUMBER
from ivr.flow.system import started_over
from ivr.routing.rules import RoutingRules
from ivr.store.journeys import JourneyStore

log = logging.getLogger(__name__)
ESCAPE_ALL = "0123456789*#"
DIGIT_FILES = {**{d: f"digits/{d}" for d in "0123456789"}, "*": "digits/star", "#": "digits/pound"}
#: One second of Asterisk's own silence: the "prompt" of a GET DATA that only collects more keys.
SILENCE_FILE = "silence/1"
#: After a lone accept key ("1") of a prefill offer, how long more keys may still turn it into a number.
OFFER_CONFIRM_MS = 2000

#: How a transfer reaches a phone number unless ``transfer.dial`` says otherwise.
DEFAULT_TRANSFER_DIAL = "PJSIP/{number}@trunk"
#: Read() ends input on '#': a menu offering '#' as a key is played fragment by fragment instead.
READ_TERMINATOR = "#"


def normalise_number(raw: str) -> str | None:
    """Caller id as E.164-ish digits ('+15551230001'); None for anonymous/unknown."""
    digits = re.sub(r"[^\d+]", "", raw or "")
    if not digits or digits in ("+",) or raw.lower() in ("unknown", "anonymous"):
        return None
    return digits


class SpeechMenus(Protocol):
    """Listening for a spoken answer (``ivr.speech.service.SpeechService``).

    ``menu`` plays the fragments and hears the caller; ``None`` means speech failed for this
    menu (no connection, engine error, timeout): the channel then does the menu on keys.
    ``"busy"``: speech is at its limit and did not listen (nothing was played): the channel says
    so and offers the menu on keys at once.
    ``play`` is how to play one fragment with STREAM FILE if it has to (keys barge in).
    """

    async def menu(
        self, session: AgiSession, menu: Menu, fragments: Sequence[str], play: Callable[[str], Awaitable[str | None]]
    ) -> InputResult | Literal["busy"] | None: ...


#: Executes a ``Handoff`` for a journey (``ivr.channels.handoff.Handoffs.send``): (sent?, how).
HandoffRunner = Callable[[Journey, Handoff], Awaitable[tuple[bool, str]]]


class VoiceChannel:
    """Executes one batch of flow commands; returns the event for the machine, or None when done."""

    def __init__(
        self,
        session: AgiSession,
        prefix: str = "ivr",
        speech: SpeechMenus | None = None,
        *,
        journey: Journey | None = None,
        handoff: HandoffRunner | None = None,
        queue_desk: QueueDesk | None = None,
        transfer_dial: str = DEFAULT_TRANSFER_DIAL,
    ) -> None:
        self.queue_desk = queue_desk
        #: Dial string for a transfer to a phone number ({number}): through the trunk
        self.transfer_dial = transfer_dial
        self.session = session
        self.prefix = prefix
        #: None: keys only (no recognizer, or speech already failed once on this call)
        self.speech = speech
        self.journey = journey
        self.handoff = handoff
        self.input_at: float | None = None  # when the last menu answer arrived (perf_counter)

    async def execute(self, commands: list[Command]) -> Event | None:
        """Render the commands in order; the event the machine waits for, or None when the call's
        part in the flow is over (the dialplan takes it from ``IVR_ACTION``)."""
        for command in commands:
            match command:
                case Play():
                    for part in command.parts or (command.prompt,):
                        await self._stream(part.audio_name(self.prefix), "")
                case Menu():
                    return await self.menu_input(command)
                case Ask():
                    return await self.ask(command)
                case Queue():
                    await self.queue(command)
                    return None
                case Hangup():
                    await self.session.set_variable(var.ACTION, "hangup")
                    return None
                case Fallback():
                    await self.session.set_variable(var.ACTION, "fallback")
                    return None
                case EstimateWait():
                    return await self.estimate(command)
                case AnnounceQueue():
                    await self.announce(command)
                case BookCallback():
                    return await self.book_callback(command)
                case Transfer():
                    return await self.transfer(command)
                case Handoff():
                    return await self.send_handoff(command)
                case _:
                    cannot_render("voice", command)
        return Continue()

    async def menu_input(self, menu: Menu) -> InputResult:
        result = await self.menu(menu)
        self.input_at = time.perf_counter()
        return result

    async def send_handoff(self, command: Handoff) -> HandoffResult:
        """The link goes out by SMS while the caller is still on the line; the step then says so
        (or that it could not) and ends the call or carries on."""
        if self.handoff is None or self.journey is None:
            return HandoffResult(False, "disabled")
        sent, how = await self.handoff(self.journey, command)
        if sent and self.input_at is not None:  # bench/handoff.py reads this line
            log.info(
                "handoff: key press to SMS accepted by the gateway in %.1f ms (journey %s)",
                (time.perf_counter() - self.input_at) * 1000,
                self.journey.id,
            )
        return HandoffResult(sent, how)

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
        for choice in menu.choices if menu.speak_choices else ():
            fragments += [
                FOR_PROMPT.audio_name(self.prefix),
                choice.label.audio_name(self.prefix),
                PRESS_PROMPT.audio_name(self.prefix),
                DIGIT_FILES[choice.key],
            ]
        if self.speech is not None and menu.speech:
            spoken = await self.speech.menu(self.session, menu, fragments, lambda name: self._stream(name, ESCAPE_ALL))
            if isinstance(spoken, InputResult):
                return spoken
            if spoken == "busy":
                # Nobody listens: the caller learns why before the menu on keys.
                log.debug("speech busy at %s: the menu is offered on keys", menu.step)
                fragments = [SPEECH_BUSY_PROMPT.audio_name(self.prefix), *fragments]
            # Speech failed or is busy: this menu on keys (after a failure the caller hears it
            # once more), and keys only for the rest of the call: no failure at every menu, and
            # less load on a busy recognizer.
            self.speech = None
        if READ_TERMINATOR not in {choice.key for choice in menu.choices}:
            heard = await self._read_menu(fragments, menu.timeout)
            if heard is not None:
                return heard
        for name in fragments:
            digit = await self._stream(name, ESCAPE_ALL)
            if digit:
                return InputResult("match", "dtmf", digit)
        reply = await self.session.command(agi.wait_for_digit(int(menu.timeout * 1000)))
        digit = agi.digit_from_reply(reply) if reply.result_int > 0 else None
        return InputResult("match", "dtmf", digit) if digit else InputResult("noinput", "dtmf")

    async def _read_menu(self, fragments: list[str], timeout: float) -> InputResult | None:
        """The whole menu in one Asterisk application: ``Read(IVR_MENU_KEY,f1&f2&...,1,,1,<timeout>)``.

        Why not one STREAM FILE per fragment: between two AGI commands res_agi reads the
        channel's frames and drops them, so a key whose end falls in that gap is lost (one bench
        run at 40 calls/s saw a menu call in 400 take the no-input branch); Read plays the
        fragments back to back and any key ends them. It is also two round trips (Read, then the key) instead of ten. A fragment
        Asterisk cannot open is skipped by Read with a WARNING in Asterisk's log. ``None``: Read
        itself failed (not there, bad arguments): the caller gets the fragments one by one.
        """
        reply = await self.session.command(
            agi.exec_app("Read", [var.MENU_KEY, "&".join(fragments), "1", "", "1", f"{timeout:g}"])
        )
        if reply.result_int < 0:  # a hangup became CallEnded in the session; this is Read failing
            log.error("Read failed for a menu (%s): playing its fragments one by one", reply.raw)
            return None
        key = agi.variable_from_reply(await self.session.command(agi.get_variable(var.MENU_KEY)))
        return InputResult("match", "dtmf", key) if key else InputResult("noinput", "dtmf")

    async def ask(self, ask: Ask) -> InputResult:
        if ask.offer:
            return await self.offer(ask)
        reply = await self.session.command(
            agi.get_data(ask.prompt.audio_name(self.prefix), int(ask.timeout * 1000), ask.max_digits)
        )
        # GET DATA's result is the keys ("", "12*3"), not a number: only "-1" is a failure.
        if reply.result == "-1":  # the prompt could not be played; the caller can still type
            log.error("GET DATA failed for %s: %s", ask.prompt.audio_name(self.prefix), reply.raw)
            return InputResult("noinput", "dtmf")
        digits, _timed_out = agi.get_data_digits(reply)
        digits = digits.rstrip(ask.terminator)
        return InputResult("match", "dtmf", digits) if digits else InputResult("noinput", "dtmf")

    async def offer(self, ask: Ask) -> InputResult:
        """Prefill: "We have your account number ending in" 4 3 2 1 "Press 1 to use it, or enter another."

        Every fragment can be interrupted by a key. A lone accept key (no more keys within
        ``OFFER_CONFIRM_MS``, or followed by the terminator) accepts; any other keys are a new value,
        collected like a plain ask (up to ``max_digits``, the terminator ends early).
        """
        first: str | None = None
        if ask.offer_prompt:
            first = await self._stream(ask.offer_prompt.audio_name(self.prefix), ESCAPE_ALL)
        if not first and ask.offer:
            first = await self._say_digits(ask.offer)
        if not first:
            first = await self._stream(OFFER_CHOICE_PROMPT.audio_name(self.prefix), ESCAPE_ALL)
        if not first:
            first = await self._wait_digit(int(ask.timeout * 1000))
        if not first or first == ask.terminator:
            return InputResult("noinput", "dtmf")
        digits = first
        if first == OFFER_ACCEPT_KEY:
            more = await self._wait_digit(OFFER_CONFIRM_MS)
            if not more or more == ask.terminator:
                return InputResult("match", "dtmf", OFFER_ACCEPT_KEY)
            digits += more
        if len(digits) < ask.max_digits and digits[-1] != ask.terminator:
            reply = await self.session.command(
                agi.get_data(SILENCE_FILE, int(ask.timeout * 1000), ask.max_digits - len(digits))
            )
            if reply.result == "-1":
                log.error("GET DATA %s failed: %s", SILENCE_FILE, reply.raw)
            else:
                digits += agi.get_data_digits(reply)[0]
        digits = digits.split(ask.terminator, 1)[0]
        return InputResult("match", "dtmf", digits) if digits else InputResult("noinput", "dtmf")

    async def _say_digits(self, digits: str) -> str | None:
        """SAY DIGITS with Asterisk's own recordings; returns the key that interrupted it."""
        reply = await self.session.command(agi.say_digits(digits, ESCAPE_ALL))
        if reply.result_int < 0:
            log.error("SAY DIGITS failed: %s", reply.raw)
            return None
        return agi.digit_from_reply(reply)

    async def _wait_digit(self, timeout_ms: int) -> str | None:
        reply = await self.session.command(agi.wait_for_digit(timeout_ms))
        return agi.digit_from_reply(reply) if reply.result_int > 0 else None

    async def queue(self, queue: Queue) -> None:
        for name, value in queue.variables.items():
            await self.session.set_variable(f"__{name}", value)  # '__': inherited by the agent's leg
        await self.session.set_variable(var.QUEUE, queue.queue)
        await self.session.set_variable(var.QUEUE_PRIO, str(queue.priority))
        await self.session.set_variable(var.QUEUE_TIMEOUT, str(queue.timeout))
        await self.session.set_variable(var.ACTION, "queue")

    async def estimate(self, command: EstimateWait) -> QueueEstimate:
        """The queue desk's estimate for the queue step (``ivr.channels.queuedesk``)."""
        if self.journey is None:
            return QueueEstimate(0, 0.0)
        return await queuedesk.estimate(self.queue_desk, self.journey, command)

    async def announce(self, command: AnnounceQueue) -> None:
        """ "You are number" N "in line. The wait is about" M "minutes." with Asterisk's numbers."""
        await self._stream(QUEUE_POSITION_PROMPT.audio_name(self.prefix), "")
        await self.session.command(agi.say_number(command.position))
        await self._stream(QUEUE_WAIT_PROMPT.audio_name(self.prefix), "")
        await self.session.command(agi.say_number(command.minutes))
        await self._stream(QUEUE_MINUTES_PROMPT.audio_name(self.prefix), "")

    async def book_callback(self, command: BookCallback) -> CallbackBooked:
        if self.journey is None:
            return CallbackBooked(None, "no journey")
        return await queuedesk.book_callback(self.queue_desk, self.journey, command)

    async def transfer(self, command: Transfer) -> TransferEnded:
        """Blind transfer: ``EXEC Dial(<dial string>,<timeout>)``, then ``DIALSTATUS``.

        Dial returns when nobody answered within the timeout (NOANSWER, BUSY, CONGESTION,
        CHANUNAVAIL) or, after an answer, when the callee hangs up (ANSWER; the caller is
        still here and the dialplan hangs up). When the caller hangs up first, res_agi keeps
        the session in dead mode, where ``DIALSTATUS`` can still be read: an answered transfer
        is then still a transfer; anything else is the caller leaving.
        """
        dial = dial_string(command.destination, self.transfer_dial)
        line = agi.exec_app("Dial", [dial, str(command.timeout)])
        try:
            reply = await self.session.command(line, timeout=command.timeout + TRANSFER_TALK_LIMIT_S)
        except CallEnded:
            status = await self.session.variable_after_hangup("DIALSTATUS")
            if (status or "").lower() != "answer":
                raise
            log.info("transfer to %s answered; the caller hung up first", command.destination)
            return TransferEnded("answer", dial)
        found = agi.variable_from_reply(await self.session.command(agi.get_variable("DIALSTATUS")))
        status = (found or "").lower()
        if reply.result_int < 0 and not status:
            return TransferEnded("failed", f"Dial refused {dial}: {reply.raw}")
        if status not in TRANSFER_STATUSES:
            return TransferEnded("failed", f"DIALSTATUS {found!r}")
        return TransferEnded(TRANSFER_STATUSES[status], dial)


#: A transferred call may talk this long before the AGI command that runs Dial gives up.
TRANSFER_TALK_LIMIT_S = 4 * 3600
#: Asterisk's DIALSTATUS values (lower case) as the engine's transfer statuses.
TRANSFER_STATUSES: dict[str, TransferStatus] = {
    "answer": "answer",
    "busy": "busy",
    "noanswer": "noanswer",
    "congestion": "congestion",
    "chanunavail": "chanunavail",
    "cancel": "cancel",
    "dontcall": "failed",
    "torture": "failed",
    "invalidargs": "failed",
}


def dial_string(destination: str, number_template: str) -> str:
    """A transfer destination as a Dial string: a phone number (digits, optional ``+``) through
    the trunk (``transfer.dial``, ``{number}``), an extension name as its PJSIP endpoint. Pure;
    the loader has already refused anything else."""
    if TRANSFER_NUMBER.fullmatch(destination):
        return number_template.format(number=destination)
    return f"PJSIP/{destination}"


class SpeechSource(Protocol):
    """Where a call finds the speech service, if one is running.

    A provider rather than the service itself: the composition root builds the calls' handler
    before the service exists (it is loaded, and its port bound, in ``start()``) and drops it in
    ``stop()``, so each call reads ``current`` when it starts. ``None``: menus take keys only.
    """

    @property
    def current(self) -> SpeechMenus | None: ...


class ProfileSource(Protocol):
    """Caller id -> what the company knows about the caller (``ivr.store.customers.CallerProfiles``).

    ``None`` for a withheld number or when the lookup failed: the call goes on as an unknown caller.
    """

    async def load(self, phone: str | None) -> CallerProfile | None: ...


class InboundCalls:
    """The ``inbound`` AGI route: pick a flow, identify the caller, run the machine, save every step."""

    def __init__(
        self,
        flows: FlowSource,
        pick_flow: Callable[[str | None, str], Flow],
        store: JourneyStore,
        *,
        prefix: str = "ivr",
        clock: Callable[[], datetime] | None = None,
        profiles: ProfileSource | None = None,
        half_life: float = DEFAULT_HALF_LIFE,
        speech: SpeechSource | None = None,
        queue_desk: QueueDesk | None = None,
        handoff: HandoffRunner | None = None,
        open_journeys: Callable[[str], Awaitable[str | None]] | None = None,
        routing: RoutingRules | None = None,
        transfer_dial: str = DEFAULT_TRANSFER_DIAL,
        holdout: float = 0.0,
        observe_flow: Callable[[float], None] | None = None,
    ) -> None:
        """``speech``: the running speech service, if any (None: keys only). ``queue_desk``:
        position, wait and callbacks (None without AMI). ``handoff``: sends continuation links.
        ``open_journeys``: customer id -> their journey open on another channel. ``routing``:
        the centre's routing table (None: the defaults). ``holdout``: share of known callers whose
        menus keep the file's order (see the machine). ``observe_flow``: told how long each step
        of the machine took (the operators' histogram)."""
        self.flows = flows
        self.speech = speech
        self.queue_desk = queue_desk
        self.routing = routing
        self.transfer_dial = transfer_dial
        self.half_life = half_life  # menu ranking (seconds); the store's option_stats use the same
        self.holdout = holdout
        self.pick_flow = pick_flow
        self.store = store
        self.profiles = profiles
        self.prefix = prefix
        self.clock = clock
        self.calls = 0
        self.finished: dict[str, int] = {}
        self.handoff = handoff
        self.open_journeys = open_journeys
        self.continued = 0
        self.observe_flow = observe_flow

    async def __call__(self, session: AgiSession) -> None:
        env = session.env
        flow = self.pick_flow(env.params.get("flow"), env.dnid if env.dnid not in ("", "unknown") else env.extension)
        journey = Journey.new(flow, "voice", caller=normalise_number(env.callerid))
        journey.refs = {"uniqueid": env.uniqueid, "channel": env.channel, "dnis": env.extension}
        self.calls += 1
        profile = await self.identify(journey)
        previous = await self.open_journey(journey)
        if previous is not None:
            # "Welcome back": 1 (or no key) continues it at its saved step, 2 starts over.
            log.info("caller is offered journey %s open at %s on %s", previous.id, previous.step, previous.channel)
            await self.run(session, previous, profile, resume_via="caller id", refs=journey.refs, offer=True)
            if not started_over(previous):
                return
            log.info("caller chose to start over instead of journey %s", previous.id)
        await self.run(session, journey, profile)

    async def continue_call(self, session: AgiSession) -> None:
        """The ``continue`` AGI route ("call me now"): a call the controller originated
        to the customer enters the IVR at their journey's current step (``?journey=<id>``)."""
        journey_id = session.env.params.get("journey", "")
        previous = await self.store.get(journey_id) if journey_id else None
        if previous is None or previous.status not in ("active", "handed_off") or previous.step is None:
            log.warning("continue call for unknown or finished journey %r: dialplan fallback", journey_id)
            await session.set_variable(var.ACTION, "fallback")
            return
        self.calls += 1
        log.info("call-me call continues journey %s at %s (was on %s)", previous.id, previous.step, previous.channel)
        profile = await self.identify(previous)
        refs = {"uniqueid": session.env.uniqueid, "channel": session.env.channel}
        await self.run(session, previous, profile, resume_via="call me", refs=refs)

    async def open_journey(self, journey: Journey) -> Journey | None:
        """The journey this caller left open on another channel (handed off, chatting), if any.
        Never fails the call: a lookup that fails or hangs means a new journey."""
        if self.open_journeys is None or journey.customer_id is None:
            return None
        try:
            found = await wait_for(self.open_journeys(journey.customer_id), 1.0)
            previous = await self.store.get(found) if found else None
        except Exception as exc:  # the call goes on as a new journey
            log.error("open journey lookup failed for journey %s: %s", journey.id, exc)
            return None
        if previous is None or previous.step is None:
            return None
        return previous

    async def identify(self, journey: Journey) -> CallerProfile | None:
        """The caller's profile by caller id, before the first prompt. Never fails the call."""
        if self.profiles is None or journey.caller is None:
            return None
        try:
            profile = await self.profiles.load(journey.caller)
        except Exception:  # degraded but safe: an unknown caller still gets the whole flow
            log.exception("caller lookup failed for journey %s; continuing as an unknown caller", journey.id)
            return None
        if profile is not None:
            journey.customer_id = profile.customer_id
            journey.customer = {**profile.fields, "verified": profile.verified, "contacts": profile.contacts}
        return profile

    async def run(
        self,
        session: AgiSession,
        journey: Journey,
        profile: CallerProfile | None = None,
        *,
        resume_via: str | None = None,
        refs: dict[str, str] | None = None,
        offer: bool = False,
    ) -> None:
        """Run the journey on this call until the dialplan takes over, saving every step.

        ``resume_via``: the journey was open on another channel and is picked up here (how the
        caller came back); ``offer``: ask first whether to continue it (see ``FlowMachine.resume``).
        """
        machine = FlowMachine(
            self.flows,
            journey,
            clock=self.clock,
            profile=profile,
            half_life=self.half_life,
            routing=self.routing,
            holdout=self.holdout,
        )
        channel = VoiceChannel(
            session,
            self.prefix,
            speech=self.speech.current if self.speech is not None else None,
            journey=journey,
            handoff=self.handoff,
            queue_desk=self.queue_desk,
            transfer_dial=self.transfer_dial,
        )
        observe = self.observe_flow
        try:
            started = time.perf_counter()
            if resume_via is None:
                commands = machine.start()
            else:
                self.continued += 1
                commands = machine.resume("voice", via=resume_via, refs=refs, offer=offer)
            if observe is not None:
                observe(time.perf_counter() - started)
            self.store.save(journey, machine.take_events())
            while True:
                try:
                    event = await channel.execute(commands)
                except CannotRender as exc:  # the engine's safe path: the journey fails, the dialplan falls back
                    commands = machine.fail(str(exc))
                    self.store.save(journey, machine.take_events())
                    event = await channel.execute(commands)
                if event is None or machine.expecting == "nothing":
                    break
                started = time.perf_counter()
                commands = machine.receive(event)
                if observe is not None:
                    observe(time.perf_counter() - started)
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


__all__ = ["InboundCalls", "ProfileSource", "Prompt", "QueueDesk", "SpeechMenus", "VoiceChannel", "normalise_number"]
