"""Plain data of the flow engine: prompts, flows, journeys, the commands a machine emits and the
events it receives.

Why all of it is plain data: a journey is saved after every step and may be resumed hours later
on another channel (SMS, chat) or another node, so nothing here holds a socket, a coroutine or a
stack frame. Channels translate ``Command`` objects to their medium and report back with events.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ivr.prompts.naming import prompt_audio_name

if TYPE_CHECKING:
    from ivr.flow.hours import BusinessHours
    from ivr.flow.steps import Step


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
DEFAULT_TEXTS: dict[str, str] = {
    "invalid": "Sorry, that is not a valid choice.",
    "noinput": "Sorry, I did not hear your choice.",
    "invalid_digits": "Sorry, that number is not valid.",
    "failure": "Let me get someone to help you.",
    # A spoken answer heard with low confidence is read back (menu ``confirm_below``):
    # "Did you say" <option label> "Is that right?" "For" "yes" "press" 1 "For" "no" "press" 2.
    "confirm": "Did you say",
    "confirm_question": "Is that right?",
    "confirm_no": "Sorry about that.",
    "yes": "yes",
    "no": "no",
}


# ----------------------------------------------------------------------------------------- flows
@dataclass(frozen=True)
class FlowProblem:
    """One thing wrong with a flow file, printed as ``file:line: step: message``."""

    file: str
    line: int
    step: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.step or '-'}: {self.message}"


@dataclass(frozen=True)
class Flow:
    name: str
    version: str  # short hash of the file's bytes: journeys keep the version they started on
    start: str
    steps: dict[str, Step]
    source: str = ""
    description: str = ""
    numbers: tuple[str, ...] = ()  # dialled numbers (DNIS) routed to this flow
    hours: dict[str, BusinessHours] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEXTS))
    on_failure: str | None = None  # flow-wide step for menus/asks that run out of tries
    personalize: bool = True  # False: no menu of this flow is reordered, whatever the menu says

    def prompts(self) -> list[Prompt]:
        found: list[Prompt] = [Prompt(t) for t in self.texts.values()]
        for step in self.steps.values():
            found.extend(step.prompts())
        return found


# -------------------------------------------------------------------------------------- journeys
REDACTED = "[redacted]"
JourneyStatus = Literal["active", "queued", "completed", "abandoned", "failed", "handed_off"]


def _plain(value: Any) -> Any:
    """Deep copy of JSON-shaped data (dicts, lists, tuples as lists, scalars); a dataclass as a dict."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return value


@dataclass
class Frame:
    """Where to come back to when an invoked sub-flow returns."""

    flow: str
    version: str
    return_to: str | None


@dataclass
class Journey:
    """Everything known about one customer's progress through a flow, on any channel."""

    id: str
    flow: str
    version: str
    channel: str
    step: str | None = None
    status: JourneyStatus = "active"
    caller: str | None = None
    customer_id: str | None = None
    customer: dict[str, Any] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)
    secret_slots: list[str] = field(default_factory=list)  # never persisted in clear, never carried
    path: list[str] = field(default_factory=list)
    stack: list[Frame] = field(default_factory=list)
    attempts: int = 0
    intent: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # channel references: call uniqueid, DNIS, ...
    # Personalized menus, by step name. ``menu_keys``: key -> option id as last spoken, the mapping
    # input is matched against (also after a resume on another channel). ``personalization``: why
    # the menu came out in that order ({order, keys, reason, reordered, scores, flow}), for audit.
    menu_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    personalization: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Speech. ``recognition``: the last thing the caller said and what it was taken to mean
    # ({step, utterance, intent, option, confidence, status}), for the agent. ``confirming``: a
    # low-confidence answer waiting for the caller's yes/no ({step, option, utterance, intent,
    # confidence}); any channel can render and answer the confirmation.
    recognition: dict[str, Any] = field(default_factory=dict)
    confirming: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def new(cls, flow: Flow, channel: str, caller: str | None = None) -> Journey:
        return cls(id=uuid.uuid4().hex, flow=flow.name, version=flow.version, channel=channel, caller=caller)

    def to_dict(self) -> dict[str, Any]:
        """A deep, independent copy as plain data (JSON types only), field for field.

        Why not ``dataclasses.asdict``: the journey writer snapshots every journey saved since
        its last commit, several times a call; ``asdict`` inspects every nested value for
        dataclasses and was the largest cost in the controller's profile (12% of its CPU on
        menu calls). Only ``stack`` holds dataclasses; everything else is JSON-shaped already.
        ``test_to_dict_equals_asdict`` keeps the two equal, so a new field cannot be forgotten.
        """
        return {
            "id": self.id,
            "flow": self.flow,
            "version": self.version,
            "channel": self.channel,
            "step": self.step,
            "status": self.status,
            "caller": self.caller,
            "customer_id": self.customer_id,
            "customer": _plain(self.customer),
            "slots": dict(self.slots),
            "secret_slots": list(self.secret_slots),
            "path": list(self.path),
            "stack": [{"flow": f.flow, "version": f.version, "return_to": f.return_to} for f in self.stack],
            "attempts": self.attempts,
            "intent": self.intent,
            "outcome": _plain(self.outcome),
            "refs": dict(self.refs),
            "menu_keys": {step: dict(keys) for step, keys in self.menu_keys.items()},
            "personalization": _plain(self.personalization),
            "recognition": _plain(self.recognition),
            "confirming": _plain(self.confirming),
            "started_at": self.started_at,
            "updated_at": self.updated_at,
        }

    def persisted(self) -> dict[str, Any]:
        """What may be written down: secret slots (a PIN) are redacted, so they live only in memory."""
        data = self.to_dict()
        for name in self.secret_slots:
            if name in data["slots"]:
                data["slots"][name] = REDACTED
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Journey:
        data = dict(data)
        data["stack"] = [Frame(**f) for f in data.get("stack", [])]
        return cls(**data)


@dataclass(frozen=True)
class Interaction:
    """One entry for the append-only interaction log (step entered, option chosen, ...)."""

    kind: str
    step: str | None
    data: dict[str, Any]
    at: float


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


@dataclass(frozen=True)
class Continue:
    """The channel finished the commands that needed no input."""


@dataclass(frozen=True)
class CallerLeft:
    """The caller hung up / closed the conversation."""

    reason: str = "hangup"


Event = InputResult | Continue | CallerLeft
