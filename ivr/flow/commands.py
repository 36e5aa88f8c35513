"""What the flow engine says and hears: prompts, the commands a machine emits and the events it
receives.

Why plain data: channels (voice, chat, SMS) translate ``Command`` objects to their medium and answer
with an ``Event``; a journey may be resumed hours later on another channel or node, so nothing here
holds a socket, a coroutine or a stack frame. Step kinds build these; they never see a channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ivr.flow.stages import AGO_PHRASES
from ivr.prompts.naming import prompt_audio_name


# --------------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Prompt:
    """Words to say. ``audio`` names a studio recording that overrides the rendered text."""

    text: str
    audio: str | None = None

    def audio_name(self, prefix: str = "ivr") -> str:
        return self.audio or prompt_audio_name(self.text, prefix)


#: Fragments the voice channel composes menus from ("For" <label> "press" <digit>).
FOR_PROMPT = Prompt("For")
PRESS_PROMPT = Prompt("press")
#: The key that accepts a prefill offer, and the words that follow the offered digits.
OFFER_ACCEPT_KEY = "1"
OFFER_CHOICE_PROMPT = Prompt("Press 1 to use it, or enter another.")
#: Every fragment the channels compose at run time (not found in any flow's ``prompts()``):
#: ``ivr prompts build``, the demo and the test lab render these besides the flows' own prompts.
#: A caller whose journey is open on another channel: continue it (1), or start over (2).
WELCOME_BACK_PROMPT = Prompt("Welcome back. You can continue where you left off.")
CONTINUE_LABEL = Prompt("continuing where you left off")
RESTART_LABEL = Prompt("starting over")
#: Before joining a queue: "You are number" N "in line. The wait is about" M "minutes."
#: then, past the callback threshold, the offer; a booked callback ends with the goodbye.
QUEUE_POSITION_PROMPT = Prompt("You are number")
QUEUE_WAIT_PROMPT = Prompt("in line. The wait is about")
QUEUE_MINUTES_PROMPT = Prompt("minutes.")
CALLBACK_OFFER_PROMPT = Prompt("To be called back without losing your place, press 1. To keep holding, press 2.")
CALLBACK_BOOKED_PROMPT = Prompt("Thank you. We will call you back when it is your turn. Goodbye.")
#: Before a menu on keys when speech is at its limit: callers who would have waited past the
#: latency budget are told why nobody listens, and the keys follow at once.
SPEECH_BUSY_PROMPT = Prompt("Voice answers are busy right now. Please use your keypad.")
#: "ten minutes ago", "yesterday"...: what ``{journey.last_contact.ago}`` in a ``say`` text becomes.
AGO_PROMPTS = tuple(Prompt(phrase) for phrase in AGO_PHRASES)
SYSTEM_PROMPTS: tuple[Prompt, ...] = (
    FOR_PROMPT,
    SPEECH_BUSY_PROMPT,
    PRESS_PROMPT,
    OFFER_CHOICE_PROMPT,
    WELCOME_BACK_PROMPT,
    CONTINUE_LABEL,
    RESTART_LABEL,
    QUEUE_POSITION_PROMPT,
    QUEUE_WAIT_PROMPT,
    QUEUE_MINUTES_PROMPT,
    CALLBACK_OFFER_PROMPT,
    CALLBACK_BOOKED_PROMPT,
    *AGO_PROMPTS,
)


# -------------------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Play:
    """Words to say. ``parts``: the same words as fragments that each have audio (a ``say`` text
    with placeholders: "You called about" + "paying your bill" + "ten minutes ago"), which voice
    plays in order; text channels show ``prompt``, the whole sentence."""

    step: str
    prompt: Prompt
    parts: tuple[Prompt, ...] = ()


@dataclass(frozen=True)
class Choice:
    key: str
    option: str
    label: Prompt
    intents: tuple[str, ...] = ()


@dataclass(frozen=True)
class Menu:
    step: str
    prompt: Prompt
    choices: tuple[Choice, ...]
    timeout: float
    attempt: int
    speech: bool = True  # the caller may answer by voice where the channel can listen
    #: False: the prompt itself says the keys ("press 1 ..."), so voice plays only the prompt;
    #: text channels still list the choices
    speak_choices: bool = True


@dataclass(frozen=True)
class Ask:
    step: str
    prompt: Prompt
    slot: str
    min_digits: int
    max_digits: int
    timeout: float
    attempt: int
    terminator: str = "#"
    # Prefill: a value the caller gave before is offered back. ``offer`` is only its last digits
    # (what may be shown or said); pressing/sending ``OFFER_ACCEPT_KEY`` accepts it, a full value
    # replaces it. ``offer_prompt`` introduces the digits ("We have your account number ending in").
    offer: str | None = None
    offer_prompt: Prompt | None = None


@dataclass(frozen=True)
class Queue:
    step: str
    queue: str
    skill: str | None
    priority: int
    timeout: int
    variables: dict[str, str]


@dataclass(frozen=True)
class Hangup:
    step: str | None
    reason: str


@dataclass(frozen=True)
class Fallback:
    """The engine cannot continue: the channel takes its safe path (voice: the dialplan fallback)."""

    step: str | None
    reason: str


@dataclass(frozen=True)
class Handoff:
    """Continue this journey on another channel: ``chat`` (a link sent by SMS) or ``sms``.

    The channel that executes it creates the continuation and sends the message, then answers
    with a ``HandoffResult``: sent when the message was accepted by the gateway, not sent when it
    could not be (no mobile number, the feature is off, the gateway refused).
    ``resume``: the step the journey continues at on the new channel.
    """

    step: str
    channel: Literal["chat", "sms"]
    resume: str
    prompt: Prompt | None = None  # words before the link in the message


@dataclass(frozen=True)
class EstimateWait:
    """Before joining ``queue``: the channel asks its queue desk for the caller's position and
    estimated wait and answers with a ``QueueEstimate`` (the engine never awaits a service)."""

    step: str
    queue: str
    skill: str | None


@dataclass(frozen=True)
class AnnounceQueue:
    """ "You are number" <position> "in line. The wait is about" <minutes> "minutes." """

    step: str
    position: int
    minutes: int


@dataclass(frozen=True)
class BookCallback:
    """Book a callback that keeps the caller's place in ``queue`` (the join it replaces); the
    channel answers with a ``CallbackBooked``."""

    step: str
    queue: Queue


@dataclass(frozen=True)
class Transfer:
    """Blind transfer of the call to ``destination`` (an extension name or a phone number,
    checked by the loader), ringing at most ``timeout`` seconds; the channel answers with a
    ``TransferEnded``. Only voice can render it; text channels answer ``unsupported``."""

    step: str
    destination: str
    timeout: int


Command = (
    Play | Menu | Ask | Queue | Hangup | Fallback | Handoff | EstimateWait | AnnounceQueue | BookCallback | Transfer
)


# ---------------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class InputResult:
    """One result type for DTMF, speech and text."""

    status: Literal["match", "nomatch", "noinput"]
    mode: Literal["dtmf", "speech", "text"]
    utterance: str = ""
    interpretation: str | None = None  # an option id or intent name, when the channel knows it
    confidence: float = 1.0
    intent: str | None = None  # the intent a spoken/typed answer matched (interpretation: its option)
    # Why the words were taken to mean that (lexical hit, nearest example, margin), or why nothing:
    # saved with the recognition so the agent's card and the timeline can show it.
    reason: str | None = None


@dataclass(frozen=True)
class Continue:
    """The channel finished the commands that needed no input."""


@dataclass(frozen=True)
class CallerLeft:
    """The caller hung up / closed the conversation."""

    reason: str = "hangup"


@dataclass(frozen=True)
class QueueEstimate:
    """The queue desk's answer to ``EstimateWait``.

    ``wait_s`` 0: an agent is free (or nothing is known): straight through. ``callback_after``: the
    desk's threshold in seconds (``callbacks.offer_after``; None: never by default).
    ``can_book``: a callback can be booked for this journey here (a desk that books, a number).
    """

    position: int
    wait_s: float
    callback_after: float | None = None
    can_book: bool = False


@dataclass(frozen=True)
class CallbackBooked:
    """The answer to ``BookCallback``: the ticket, or None when it was refused (``why``)."""

    ticket: str | None
    why: str = ""


#: How a transfer ended, in Asterisk's ``DIALSTATUS`` words (lower case), plus ``unsupported``
#: (a channel that cannot transfer) and ``failed`` (the dial string was refused).
TransferStatus = Literal["answer", "busy", "noanswer", "congestion", "chanunavail", "cancel", "unsupported", "failed"]


@dataclass(frozen=True)
class TransferEnded:
    """The answer to ``Transfer``: ``answer`` when somebody picked up."""

    status: TransferStatus
    detail: str = ""


#: What a channel answers after running a service for the engine (not the customer's input).
ServiceResult = QueueEstimate | CallbackBooked | TransferEnded


@dataclass(frozen=True)
class HandoffResult:
    """What became of a ``Handoff``: ``sent`` when the gateway accepted the message; ``detail``
    says how it went (the gateway's answer, or why nothing was sent: "disabled", "no mobile")."""

    sent: bool
    detail: str = ""


Event = InputResult | Continue | CallerLeft | HandoffResult | ServiceResult
