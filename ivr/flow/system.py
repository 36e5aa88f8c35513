"""System flows: steps a caller hears that no flow file declares, run by the engine like any other.

Why a flow and not code in a channel: what a caller hears must be in the journey's path and the
interaction log, stamped by the machine's clock, and renderable by every channel. A system flow is
entered like an invoked sub-flow (the journey's own step is kept on the stack) and never rests in
a saved journey: the machine returns to the journey's own step when the caller leaves or the
journey ends inside it.

Its version is ``SYSTEM_VERSION``, never a file hash, so the machine tells it from the library's flows.
"""

from __future__ import annotations

from ivr.flow.journey import Journey
from ivr.flow.model import Flow
from ivr.flow.steps.continue_offer import STARTED_OVER, ContinueOfferStep

SYSTEM_FLOW = "system"
SYSTEM_VERSION = "system"
#: "Welcome back, 1 to continue, 2 to start over" (``ivr.flow.steps.continue_offer``)
CONTINUE_OFFER = "continue_offer"

SYSTEM_FLOWS: dict[str, Flow] = {
    SYSTEM_FLOW: Flow(
        name=SYSTEM_FLOW,
        version=SYSTEM_VERSION,
        start=CONTINUE_OFFER,
        steps={CONTINUE_OFFER: ContinueOfferStep(CONTINUE_OFFER, 0, None)},
        description="steps the engine runs itself",
    )
}


def is_system(flow: Flow) -> bool:
    return flow.version == SYSTEM_VERSION


def started_over(journey: Journey) -> bool:
    """The caller was offered this open journey and chose to start a new one instead."""
    return journey.status == "abandoned" and journey.outcome.get(STARTED_OVER) is True
