"""Chat (and SMS) contacts offered to blended agents: N chats at once, next to one phone call.

The chat channel calls :meth:`ChatOffers.offer` with a :class:`ChatContact`; the ACD
picks a logged-in agent holding the skill with a free chat slot (lowest skill penalty first, then
the least busy, then who has waited longest), publishes a ``chat.offer`` with a screen pop built
from the journey to ``agent.<id>``, and from then on relays messages both ways:

* customer -> agent: :meth:`customer_message` publishes ``chat.message`` to ``agent.<id>``;
* agent -> customer: the desktop's ``chat.send`` becomes ``agent.message`` on ``chat.<contact_id>``
  (the chat channel subscribes to that topic), ``chat.end`` becomes ``agent.closed``.

The offers see the ACD only through :class:`AgentDesk` (what they use of it), so this module does
not import the ACD service, which owns one ``ChatOffers``: no import cycle between the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivr.acd.agents import AgentState
from ivr.acd.topics import agent_topic, chat_topic
from ivr.bus.pubsub import Bus

__all__ = ["AgentDesk", "BlendedChats", "ChatContact", "ChatOffers", "chat_topic"]


@dataclass(frozen=True)
class ChatContact:
    contact_id: str
    journey_id: str
    skill: str
    channel: str = "chat"
    customer_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "journey_id": self.journey_id,
            "skill": self.skill,
            "channel": self.channel,
            "customer_id": self.customer_id,
            "context": dict(self.context),
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
        )


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


class ChatOffers:
    def __init__(self, acd: AgentDesk) -> None:
        self.acd = acd
        #: contact_id -> (agent_id, contact)
        self.active: dict[str, tuple[str, ChatContact]] = {}

    async def offer(self, contact: ChatContact) -> str | None:
        """The agent id the contact was given to, or None when no agent can take it now."""
        if contact.contact_id in self.active:
            return self.active[contact.contact_id][0]
        candidates = self.acd.agents_with_skill(contact.skill, lambda s: s.can_take_chat())
        if not candidates:
            return None
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
            contact.journey_id, "chat_offered", agent_id=state.agent_id, agent=state.display_name, skill=contact.skill
        )
        return state.agent_id

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
