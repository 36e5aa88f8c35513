"""Step kinds, one module each, registered by name (``@step_kind``).

Why one module per kind: a kind carries both its parser and its behaviour, so adding one is a new
module in this package (found and registered at import, below) plus its test; the loader,
``ivr check``, the prompt builder and the machine learn it from the class. ``base`` holds what all
kinds share and imports neither ``Flow`` nor the machine.
"""

from __future__ import annotations

import importlib
import pkgutil

from ivr.flow.steps.ask import AskStep
from ivr.flow.steps.base import (
    COMMON_KEYS,
    STEP_KINDS,
    End,
    EnterFlow,
    FlowView,
    Goto,
    Outcome,
    ParseContext,
    RetryingStep,
    Return,
    Runtime,
    Step,
    Wait,
    step_kind,
)
from ivr.flow.steps.branch import BranchStep
from ivr.flow.steps.goto import GotoStep
from ivr.flow.steps.handoff import HandoffStep
from ivr.flow.steps.hangup import HangupStep
from ivr.flow.steps.invoke import InvokeStep
from ivr.flow.steps.menu import CONFIRM_NO, CONFIRM_YES, MenuOption, MenuStep
from ivr.flow.steps.queue import QueueStep
from ivr.flow.steps.return_ import ReturnStep
from ivr.flow.steps.say import SayStep

# Every module of this package is a step kind (or ``base``): importing it registers the kind.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "COMMON_KEYS",
    "CONFIRM_NO",
    "CONFIRM_YES",
    "STEP_KINDS",
    "AskStep",
    "BranchStep",
    "End",
    "EnterFlow",
    "FlowView",
    "Goto",
    "GotoStep",
    "HandoffStep",
    "HangupStep",
    "InvokeStep",
    "MenuOption",
    "MenuStep",
    "Outcome",
    "ParseContext",
    "QueueStep",
    "RetryingStep",
    "Return",
    "ReturnStep",
    "Runtime",
    "SayStep",
    "Step",
    "Wait",
    "step_kind",
]
