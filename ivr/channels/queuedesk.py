"""The queue desk as the channels see it: the estimate and the callback booking a queue step
asks for, answered as engine events.

Why one module: voice and the text channels run the same two services for the same step; the
translation (no desk -> nothing known, a refused booking -> why) is written once here.
"""

from __future__ import annotations

from typing import Protocol

from ivr.flow.commands import BookCallback, CallbackBooked, EstimateWait, Queue, QueueEstimate
from ivr.flow.journey import Journey


class QueueDesk(Protocol):
    """Queue position, estimated wait and callbacks (``ivr.acd.callbacks.Callbacks`` via the ACD).

    What the customer hears and the interactions are the queue step's; the desk only answers."""

    def estimate(self, queue: str, skill: str | None) -> tuple[int, float]: ...
    def callback_after(self) -> float | None: ...
    async def book(self, journey: Journey, queue: Queue) -> str | None: ...


async def estimate(desk: QueueDesk | None, journey: Journey, command: EstimateWait) -> QueueEstimate:
    """Without a desk nothing is known: the customer goes straight through, as when an agent is free."""
    if desk is None:
        return QueueEstimate(0, 0.0)
    position, eta = desk.estimate(command.queue, command.skill)
    return QueueEstimate(position, eta, desk.callback_after(), can_book=journey.caller is not None)


async def book_callback(desk: QueueDesk | None, journey: Journey, command: BookCallback) -> CallbackBooked:
    if desk is None:
        return CallbackBooked(None, "no callback desk")
    ticket = await desk.book(journey, command.queue)
    return CallbackBooked(ticket, "" if ticket else "already booked")
