"""Chat (and SMS) contacts offered to blended agents: N chats at once, next to one phone call.

The chat channel calls :meth:`ChatOffers.offer` with a :class:`ChatContact`; the ACD
picks a logged-in agent holding the skill with a free chat slot (lowest skill penalty first, then
the least busy, then who has waited longest), publishes a ``chat.offer`` with a screen pop built
from the journey to ``agent.<id>``, and from then on relays messages both ways:

* customer -> agent: :meth:`customer_message` publishes ``chat.message`` to ``agent.<id>``;
* agent -> customer: the desktop's ``chat.send`` becomes ``agent.message`` on ``chat.<contact_id>``
  (the chat channel subscribes to that topic), ``chat.end`` becomes ``agent.closed``.

A chat no agent can take yet waits (:class:`WaitingChat`), and its customer may leave before one
does, as a caller hangs up in a queue: they close the chat (:meth:`ChatOffers.leave`), close the
page, or the queue step's ``timeout`` passes. An open page's event stream offers the chat again
every few seconds (``ivr.web.chat``), from whichever node serves it, so an offer is the sign the
customer is still there: no offer for ``leave_grace`` seconds means the page is gone (a reload
offers again well within it). Each logs ``queue_abandoned`` (the event app_queue's
QueueCallerAbandon logs for a call) with the queue, the ``hold_time`` and the ``reason``, so
abandoned and time to abandon mean the same for a chat as for a call. One task, owned here and
running only while chats wait, checks every ``sweep`` seconds; :meth:`ChatOffers.stop` ends it.

**Across a leader change.** The waiting chats live in the leader's memory, so a new leader
adopts them from the store (:func:`still_waiting` over each queued chat journey's log): each waits
again from the moment it first queued, is offered at its page's next offer, and, when no page
offers it any more (the customer left while no leader listened), is logged abandoned after
``leave_grace`` like any other, so the KPIs count it.

The offers see the ACD only through :class:`AgentDesk` (what they use of it), so this module does
not import the ACD service, which owns one ``ChatOffers``: no import cycle between the two.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivr.acd.agents import AgentState
from ivr.acd.topics import agent_topic, chat_topic
from ivr.aio import cancel_and_wait
from ivr.bus.pubsub import Bus

__all__ = [
    "AgentDesk",
    "BlendedChats",
    "ChatContact",
    "ChatOffers",
    "WaitingChat",
    "chat_topic",
    "left_because",
    "still_waiting",
]

log = logging.getLogger(__name__)
#: Seconds a waiting chat may go without an offer from its page before its customer counts as
#: gone: a reload, or a phone waking up, offers again well within it.
LEAVE_GRACE_S = 30.0
#: Abandoned chats remembered, so a page opened again is told, not offered again.
REMEMBERED_LEFT = 10000


@dataclass(frozen=True)
class ChatContact:
    contact_id: str
    journey_id: str
    skill: str
    channel: str = "chat"
    customer_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    timeout: float = 600.0  # the queue step's: seconds a chat waits for an agent before it gives up

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "journey_id": self.journey_id,
            "skill": self.skill,
            "channel": self.channel,
            "customer_id": self.customer_id,
            "context": dict(self.context),
            "timeout": self.timeout,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChatContact:
        """As sent to the ACD leader over the bus (``to_dict``); KeyError/TypeError when malformed."""
        customer = data.get("customer_id")
        context = data.get("context") or {}
        if not isinstance(context, dict):
            raise TypeError("a chat contact's context is an object")
        return cls(
            contact_id=str(data["contact_id"]),
            journey_id=str(data["journey_id"]),
            skill=str(data["skill"]),
            channel=str(data.get("channel") or "chat"),
            customer_id=None if customer is None else str(customer),
            context=dict(context),
            timeout=float(data.get("timeout") or 600.0),
        )


@dataclass
class WaitingChat:
    """A chat no agent has taken yet: since when, and whether a page still watches it."""

    contact: ChatContact
    joined_at: float
    last_seen: float = 0.0  # the latest offer of it: its page was open then

    @property
    def queue(self) -> str:
        return str(self.contact.context.get("queue") or self.contact.skill)


def left_because(chat: WaitingChat, now: float, grace: float) -> str | None:
    """Why a waiting chat's customer is gone at ``now``: ``timeout`` (waited the queue step's
    timeout), ``left`` (no page offered it for ``grace`` seconds), else None: still waiting."""
    if now - chat.joined_at >= chat.contact.timeout:
        return "timeout"
    if now - chat.last_seen >= grace:
        return "left"
    return None


#: what ends a chat's wait for an agent in its journey's log: taken, abandoned, closed
WAIT_ENDS = frozenset({"chat_offered", "queue_abandoned", "chat_closed"})


def still_waiting(log: list[dict[str, Any]]) -> float | None:
    """When a chat journey queued for an agent, if it still waits: the time of its last
    ``journey_queued`` with nothing after it that ends the wait (:data:`WAIT_ENDS`); else None.
    ``log``: the journey's interactions in order, each with ``kind`` and ``at``. Pure."""
    queued: float | None = None
    for event in log:
        if event["kind"] == "journey_queued":
            queued = float(event["at"])
        elif event["kind"] in WAIT_ENDS:
            queued = None
    return queued


class AgentDesk(Protocol):
    """What the offers need of the ACD (:class:`ivr.acd.service.Acd`): agents, pops, the bus, the log."""

    bus: Bus
    states: dict[str, AgentState]

    def agents_with_skill(self, skill: str, predicate: Callable[[AgentState], bool]) -> list[AgentState]: ...
    async def pop_for(self, call: dict[str, Any]) -> dict[str, Any]: ...
    async def publish_state(self, agent_id: str, **extra: Any) -> None: ...
    async def record(self, journey_id: str | None, kind: str, **data: Any) -> None: ...
    def authorize(
        self,
        agent_id: str,
        action: str,
        *,
        journey_id: str | None = None,
        contact_id: str | None = None,
        open_only: bool = False,
    ) -> None: ...


class BlendedChats(Protocol):
    """What the chat pages use of the blended agents: :class:`ChatOffers` on the ACD leader, or
    ``ivr.acd.desk.ChatsViaLeader`` on any node."""

    @property
    def acd(self) -> AgentDesk: ...
    async def offer(self, contact: ChatContact) -> str | None: ...
    def agent_of(self, contact_id: str) -> str | None: ...
    async def customer_message(self, contact_id: str, text: str) -> bool: ...
    async def leave(self, contact_id: str) -> str | None: ...
    def left_reason(self, contact_id: str) -> str | None: ...


class ChatOffers:
    def __init__(
        self,
        acd: AgentDesk,
        *,
        leave_grace: float = LEAVE_GRACE_S,
        sweep: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.acd = acd
        #: contact_id -> (agent_id, contact)
        self.active: dict[str, tuple[str, ChatContact]] = {}
        #: contact_id -> the chat waiting for an agent
        self.waiting: dict[str, WaitingChat] = {}
        #: contact_id -> why its customer left before an agent took it (the newest REMEMBERED_LEFT)
        self.left: OrderedDict[str, str] = OrderedDict()
        self.leave_grace = leave_grace
        self.sweep = sweep
        self.clock = clock
        self._sweeper: asyncio.Task[None] | None = None

    async def offer(self, contact: ChatContact) -> str | None:
        """The agent id the contact was given to, or None when no agent can take it now (it
        waits; see the module docstring for how a wait ends without an agent)."""
        if contact.contact_id in self.active:
            return self.active[contact.contact_id][0]
        if contact.contact_id in self.left:
            return None
        candidates = self.acd.agents_with_skill(contact.skill, lambda s: s.can_take_chat())
        if not candidates:
            self._wait(contact)
            return None
        waited = self.waiting.pop(contact.contact_id, None)
        #: from when it first queued, under whichever leader: a chat adopted across a leader change
        #: keeps its wait (as a caller's QEHOLDTIME does in app_queue)
        hold = round(max(0.0, self.clock() - waited.joined_at), 3) if waited is not None else 0.0
        state = candidates[0]
        state.take_chat(contact.contact_id, contact.journey_id, contact.channel)
        self.active[contact.contact_id] = (state.agent_id, contact)
        now = time.time()
        pop = await self.acd.pop_for(
            {"uniqueid": contact.contact_id, "journey_id": contact.journey_id, "called_at": now, "queue": contact.skill}
        )
        pop["channel"] = contact.channel
        await self.acd.bus.publish(
            agent_topic(state.agent_id), {"type": "chat.offer", "contact": contact.to_dict(), "pop": pop}
        )
        await self.acd.publish_state(state.agent_id)
        await self.acd.record(
            contact.journey_id,
            "chat_offered",
            agent_id=state.agent_id,
            agent=state.display_name,
            skill=contact.skill,
            hold_time=hold,
        )
        return state.agent_id

    # ------------------------------------------------------------------ waiting chats
    def adopt(self, contact: ChatContact, joined_at: float) -> bool:
        """A chat that waited under an earlier leader waits here, from when it first queued; its
        page has ``leave_grace`` to offer it again, else it is abandoned. False if known already
        (a page offered it first: it keeps the earlier join)."""
        if contact.contact_id in self.active or contact.contact_id in self.left:
            return False
        found = self.waiting.get(contact.contact_id)
        if found is not None:
            found.joined_at = min(found.joined_at, joined_at)
            return False
        self.waiting[contact.contact_id] = WaitingChat(contact, joined_at, last_seen=self.clock())
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="chat-waits")
        return True

    def _wait(self, contact: ChatContact) -> None:
        now = self.clock()
        found = self.waiting.get(contact.contact_id)
        if found is None:
            self.waiting[contact.contact_id] = WaitingChat(contact, now, last_seen=now)
        else:
            found.last_seen = now
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep(), name="chat-waits")

    def left_reason(self, contact_id: str) -> str | None:
        """Why this chat left the queue without an agent (``closed``, ``left``, ``timeout``), if it did."""
        return self.left.get(contact_id)

    async def leave(self, contact_id: str) -> str | None:
        """The customer closed the chat: ``closed`` (an agent had it), ``abandoned`` (still
        waiting for one), or None (neither: already over)."""
        if contact_id in self.active:
            await self.close(contact_id, by="customer")
            return "closed"
        chat = self.waiting.get(contact_id)
        if chat is None:
            return None
        await self._abandon(chat, "closed")
        return "abandoned"

    async def _abandon(self, chat: WaitingChat, reason: str) -> None:
        contact = chat.contact
        if self.waiting.pop(contact.contact_id, None) is None:
            return
        self.left[contact.contact_id] = reason
        while len(self.left) > REMEMBERED_LEFT:
            self.left.popitem(last=False)
        hold = round(max(0.0, self.clock() - chat.joined_at), 3)
        log.info("chat %s left the %s queue after %.1f s (%s)", contact.contact_id, chat.queue, hold, reason)
        await self.acd.record(
            contact.journey_id, "queue_abandoned", queue=chat.queue, hold_time=hold, reason=reason, channel="chat"
        )
        await self.acd.bus.publish(
            chat_topic(contact.contact_id), {"type": "queue.left", "contact_id": contact.contact_id, "reason": reason}
        )

    async def _sweep(self) -> None:
        """Abandon the waiting chats whose customer is gone; ends when no chat waits."""
        while self.waiting:
            await asyncio.sleep(self.sweep)
            now = self.clock()
            for chat in list(self.waiting.values()):
                reason = left_because(chat, now, self.leave_grace)
                if reason is not None:
                    try:
                        await self._abandon(chat, reason)
                    except Exception:  # the next chat's customer must still be seen leaving
                        log.exception("chat %s: the abandonment could not be logged", chat.contact.contact_id)

    async def stop(self) -> None:
        """End the sweeping task (the ACD stops): waiting chats stay as they are."""
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
            self._sweeper = None

    def agent_of(self, contact_id: str) -> str | None:
        entry = self.active.get(contact_id)
        return entry[0] if entry else None

    async def customer_message(self, contact_id: str, text: str) -> bool:
        """Relay what the customer wrote to the agent's desktop; False if the contact is not assigned."""
        agent_id = self.agent_of(contact_id)
        if agent_id is None:
            return False
        await self.acd.bus.publish(
            agent_topic(agent_id),
            {"type": "chat.message", "contact_id": contact_id, "from": "customer", "text": text, "at": time.time()},
        )
        return True

    async def agent_message(self, agent_id: str, contact_id: str, text: str) -> None:
        """From the desktop: published on ``chat.<contact_id>`` for the chat channel."""
        self.acd.authorize(agent_id, "chat.send", contact_id=contact_id, open_only=True)
        if self.agent_of(contact_id) != agent_id:  # closed by the customer a moment ago
            raise ValueError("this chat has ended")
        await self.acd.bus.publish(
            chat_topic(contact_id),
            {"type": "agent.message", "contact_id": contact_id, "agent_id": agent_id, "text": text, "at": time.time()},
        )
        _, contact = self.active[contact_id]
        await self.acd.record(
            contact.journey_id, "chat_message", **{"from": "agent", "agent_id": agent_id, "text": text}
        )

    async def close(self, contact_id: str, *, by: str, agent_id: str | None = None) -> None:
        """Close the chat (``agent_id``: an agent asked, and it must be theirs; ended is a no-op)."""
        if agent_id is not None:
            self.acd.authorize(agent_id, "chat.end", contact_id=contact_id)
        entry = self.active.get(contact_id)
        if entry is None or (agent_id is not None and entry[0] != agent_id):
            return
        del self.active[contact_id]
        owner, contact = entry
        state = self.acd.states.get(owner)
        if state is not None:
            state.drop_chat(contact_id)
        if by == "agent":
            await self.acd.bus.publish(
                chat_topic(contact_id),
                {"type": "agent.closed", "contact_id": contact_id, "agent_id": owner, "at": time.time()},
            )
        await self.acd.bus.publish(agent_topic(owner), {"type": "chat.closed", "contact_id": contact_id, "by": by})
        await self.acd.publish_state(owner)
        await self.acd.record(contact.journey_id, "chat_closed", by=by, agent_id=owner)
