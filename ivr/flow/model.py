"""Flows as plain data, and the engine's data in one import.

``Flow`` is what the loader builds from a file. The commands and events (``ivr.flow.commands``)
and the journey (``ivr.flow.journey``) live in their own modules so that step kinds can use them
without importing ``Flow``; they are re-exported here for the channels and services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ivr.flow.commands import (
    CALLBACK_BOOKED_PROMPT,
    CALLBACK_OFFER_PROMPT,
    CONTINUE_LABEL,
    FOR_PROMPT,
    OFFER_ACCEPT_KEY,
    OFFER_CHOICE_PROMPT,
    PRESS_PROMPT,
    QUEUE_MINUTES_PROMPT,
    QUEUE_POSITION_PROMPT,
    QUEUE_WAIT_PROMPT,
    RESTART_LABEL,
    SPEECH_BUSY_PROMPT,
    SYSTEM_PROMPTS,
    WELCOME_BACK_PROMPT,
    Ask,
    CallerLeft,
    Choice,
    Command,
    Continue,
    Event,
    Fallback,
    Handoff,
    HandoffResult,
    Hangup,
    InputResult,
    Menu,
    Play,
    Prompt,
    Queue,
)
from ivr.flow.journey import REDACTED, Frame, Interaction, Journey, JourneyStatus, Waiting

if TYPE_CHECKING:
    from ivr.flow.hours import BusinessHours
    from ivr.flow.steps import Step

__all__ = [
    "CALLBACK_BOOKED_PROMPT",
    "CALLBACK_OFFER_PROMPT",
    "CONTINUE_LABEL",
    "DEFAULT_TEXTS",
    "FOR_PROMPT",
    "OFFER_ACCEPT_KEY",
    "OFFER_CHOICE_PROMPT",
    "PRESS_PROMPT",
    "QUEUE_MINUTES_PROMPT",
    "QUEUE_POSITION_PROMPT",
    "QUEUE_WAIT_PROMPT",
    "REDACTED",
    "RESTART_LABEL",
    "SPEECH_BUSY_PROMPT",
    "SYSTEM_PROMPTS",
    "WELCOME_BACK_PROMPT",
    "Ask",
    "CallerLeft",
    "Choice",
    "Command",
    "Continue",
    "Event",
    "Fallback",
    "Flow",
    "FlowProblem",
    "Frame",
    "Handoff",
    "HandoffResult",
    "Hangup",
    "InputResult",
    "Interaction",
    "Journey",
    "JourneyStatus",
    "Menu",
    "Play",
    "Prompt",
    "Queue",
    "Waiting",
]

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
    numbers_line: int = 1  # where the file lists them, for ``ivr check``
    hours: dict[str, BusinessHours] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_TEXTS))
    on_failure: str | None = None  # flow-wide step for menus/asks that run out of tries
    personalize: bool = True  # False: no menu of this flow is reordered, whatever the menu says

    def prompts(self) -> list[Prompt]:
        found: list[Prompt] = [Prompt(t) for t in self.texts.values()]
        for step in self.steps.values():
            found.extend(step.prompts())
        return found
