"""``continue_offer``: "Welcome back" before a journey the caller left open on another channel is
resumed here: 1 (or no key at all) continues it at its saved step, 2 starts over.

A system step: the engine enters it (``FlowMachine.resume(..., offer=True)``, through the system
flow of ``ivr.flow.system``), so it is not registered for flow files. Being a step, it is in the
journey's path and the interaction log, stamped by the machine's clock, and any channel that can
render a menu renders it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ivr.flow.commands import CONTINUE_LABEL, RESTART_LABEL, WELCOME_BACK_PROMPT, Choice, InputResult, Menu, Prompt
from ivr.flow.steps.base import End, Outcome, ParseContext, Return, Runtime, Step, Wait

#: Option ids of the offer; ``outcome[STARTED_OVER]`` marks a journey its caller chose to leave.
CONTINUE = "continue"
RESTART = "restart"
STARTED_OVER = "started_over"


@dataclass(frozen=True)
class ContinueOfferStep(Step):
    KIND = "continue_offer"
    FLOWS_ON = False
    #: a short wait: silence means "continue", and a returning caller should not wait long for it
    timeout: float = 3.0

    CONTINUE_KEY: ClassVar[str] = "1"
    RESTART_KEY: ClassVar[str] = "2"

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        ctx.problem("continue_offer is run by the engine when a journey is resumed, not from a flow file")
        return None

    def prompts(self) -> list[Prompt]:
        return [WELCOME_BACK_PROMPT, CONTINUE_LABEL, RESTART_LABEL]

    def render(self) -> Menu:
        choices = (
            Choice(self.CONTINUE_KEY, CONTINUE, CONTINUE_LABEL),
            Choice(self.RESTART_KEY, RESTART, RESTART_LABEL),
        )
        # Keys only: a "yes" heard by a recognizer must not end an open journey by mistake.
        return Menu(self.name, WELCOME_BACK_PROMPT, choices, self.timeout, attempt=1, speech=False)

    def enter(self, rt: Runtime) -> Outcome:
        return Wait([self.render()], "input")

    def question(self, rt: Runtime) -> Menu:
        return self.render()

    def on_input(self, rt: Runtime, result: InputResult) -> Outcome:
        """Only 2 (or the restart option) starts over: any other key, or none, continues."""
        said = result.utterance.strip()
        restart = result.status == "match" and (result.interpretation == RESTART or said == self.RESTART_KEY)
        choice = RESTART if restart else CONTINUE
        rt.record("continue_offer_answered", choice=choice, status=result.status, mode=result.mode, key=said)
        if not restart:
            return Return()  # to the step the journey was resumed at
        rt.journey.outcome = {STARTED_OVER: True}
        return End([], "abandoned")
