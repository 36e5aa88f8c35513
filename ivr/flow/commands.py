"""What the flow engine says and hears: prompts, the commands a machine emits and the events it
receives.

Why plain data: channels (voice, chat, SMS) translate ``Command`` objects to their medium and answer
with an ``Event``; a journey may be resumed hours later on another channel or node, so nothing here
holds a socket, a coroutine or a stack frame. Step kinds build these; they never see a channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
SYSTEM_PROMPTS: tuple[Prompt, ...] = (
    FOR_PROMPT,
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
)


# -------------------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Play:
    step: str
    prompt: Prompt


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
    with an ``InputResult``: ``match`` when the message was accepted by the gateway, ``nomatch``
    when it could not be sent (no mobile number, the feature is off, the gateway refused).
    ``resume``: the step the journey continues at on the new channel.
    """

    step: str
    channel: Literal["chat", "sms"]
    resume: str
    prompt: Prompt | None = None  # words before the link in the message


Command = Play | Menu | Ask | Queue | Hangup | Fallback | Handoff


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


Event = InputResult | Continue | CallerLeft
