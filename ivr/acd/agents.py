"""One agent's state and the AMI actions each transition needs. Pure: returns actions, sends nothing.

States::

    logged_out --login--> paused("login") --ready--> ready --AgentCalled--> ringing
    ringing --AgentConnect--> on_call --AgentComplete--> wrap_up --ready--> ready
    ringing --AgentRingNoAnswer--> ready          ready/wrap_up --pause(reason)--> paused(reason)
    any --logout--> logged_out

What drives Asterisk: ``login`` adds the softphone (``PJSIP/<endpoint>``) to every queue of the
agent's skills with the skill's penalty, and to ``main`` (penalty 0), paused; ``ready`` unpauses;
``pause`` and the start of wrap-up pause with a reason (queue_log and QueueStatus show it);
``logout`` removes the memberships. app_queue's own ``wrapuptime`` (queues.conf, 5 s) covers the
instant between AgentComplete and our QueuePause arriving, so no call can slip into wrap-up.

Chats are counted apart from calls (blended agents): a ready agent with a free chat slot may take
chats while on a call; the phone never rings for an agent who is not ``ready``.

Every call the agent answers and every chat they are given is remembered as a :class:`Contact`
(open, then ended), the last ``RECENT_CONTACTS`` of them: it is what the agent may write notes and a
disposition on (``ivr.acd.permissions``), and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ivr.ami import actions
from ivr.ami.actions import Action
from ivr.routing.rules import CATCH_ALL

Status = Literal["logged_out", "ready", "paused", "ringing", "on_call", "wrap_up"]
WRAP_UP_REASON = "wrap-up"
LOGIN_REASON = "login"
#: Contacts remembered per agent (open ones are never dropped: at most one call plus ``max_chats``).
RECENT_CONTACTS = 20


def interface(endpoint: str) -> str:
    return f"PJSIP/{endpoint}"


def memberships(skills: dict[str, int]) -> list[tuple[str, int]]:
    """(queue, penalty) for every skill, plus the catch-all queue at penalty 0; sorted by queue."""
    out = {skill: int(penalty) for skill, penalty in skills.items()}
    out.setdefault(CATCH_ALL, 0)
    return sorted(out.items())


@dataclass
class Contact:
    """A call this agent answered or a chat they were given: what they may still act on."""

    journey_id: str
    contact_id: str  # the caller's channel uniqueid, or the chat's contact id
    channel: str  # "call", or the chat contact's channel ("chat", "sms")
    started_at: float
    ended_at: float | None = None

    @property
    def open(self) -> bool:
        return self.ended_at is None


@dataclass
class AgentState:
    agent_id: str
    username: str
    display_name: str
    endpoint: str
    skills: dict[str, int]
    max_chats: int = 3
    status: Status = "logged_out"
    reason: str = ""
    since: float = field(default_factory=time.time)
    call: dict[str, Any] | None = None  # {journey_id, uniqueid, queue, agent_channel, ...}
    chats: set[str] = field(default_factory=set)
    #: oldest first; see :meth:`_remember`
    contacts: list[Contact] = field(default_factory=list)

    @property
    def interface(self) -> str:
        return interface(self.endpoint)

    @property
    def logged_in(self) -> bool:
        return self.status != "logged_out"

    def _set(self, status: Status, reason: str = "", now: float | None = None) -> None:
        self.status = status
        self.reason = reason
        self.since = time.time() if now is None else now

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "username": self.username,
            "display_name": self.display_name,
            "endpoint": self.endpoint,
            "skills": dict(self.skills),
            "status": self.status,
            "reason": self.reason,
            "since": self.since,
            "call": self.call,
            "chats": sorted(self.chats),
            "max_chats": self.max_chats,
        }

    # ------------------------------------------------------------------ desktop commands

    def login(self, now: float | None = None) -> list[Action]:
        if self.logged_in:
            return []
        self._set("paused", LOGIN_REASON, now)
        return [
            actions.queue_add(q, self.interface, penalty=p, member_name=self.username, paused=True)
            for q, p in memberships(self.skills)
        ] + [actions.queue_pause(self.interface, True, reason=LOGIN_REASON)]

    def logout(self, now: float | None = None) -> list[Action]:
        if not self.logged_in:
            return []
        self._set("logged_out", "", now)
        self._end_call(self.since)
        self.call = None
        return [actions.queue_remove(q, self.interface) for q, _ in memberships(self.skills)]

    def ready(self, now: float | None = None) -> list[Action]:
        """Ready for the next call; refused while the phone rings or a call is up."""
        if self.status in ("ringing", "on_call", "logged_out"):
            return []
        self._set("ready", "", now)
        self.call = None
        return [actions.queue_pause(self.interface, False)]

    def pause(self, reason: str, now: float | None = None) -> list[Action]:
        if self.status in ("logged_out", "on_call", "ringing"):
            return []
        reason = reason.strip()[:40] or "break"
        self._set("paused", reason, now)
        return [actions.queue_pause(self.interface, True, reason=reason)]

    # ------------------------------------------------------------------ what Asterisk reports

    def ringing(self, call: dict[str, Any], now: float | None = None) -> None:
        self._set("ringing", "", now)
        self.call = call

    def no_answer(self, now: float | None = None) -> None:
        if self.status == "ringing":
            self._set("ready", "", now)
            self.call = None

    def connected(self, call: dict[str, Any], now: float | None = None) -> None:
        self._set("on_call", "", now)
        self.call = {**(self.call or {}), **call}
        uniqueid = str(self.call.get("uniqueid") or "")
        if uniqueid and not any(c.contact_id == uniqueid and c.open for c in self.contacts):
            self._remember(Contact(str(self.call.get("journey_id") or ""), uniqueid, "call", self.since))

    def completed(self, now: float | None = None) -> list[Action]:
        """The call ended: wrap-up (paused) until the agent says ready."""
        if self.status not in ("on_call", "ringing"):
            return []
        self._set("wrap_up", WRAP_UP_REASON, now)
        self._end_call(self.since)
        return [actions.queue_pause(self.interface, True, reason=WRAP_UP_REASON)]

    # ------------------------------------------------------------------ after an AMI reconnect

    def reconcile(self, members: dict[str, dict[str, Any]], live_calls: set[str]) -> list[Action]:
        """Bring Asterisk back to what this agent should be, from a fresh QueueStatus.

        ``members``: queue -> {"penalty", "paused"} for this interface as Asterisk lists it;
        ``live_calls``: uniqueids of callers Asterisk still has. After an Asterisk restart the
        memberships are gone (persistentmembers = no): they are added again, paused as our state
        says. A call that vanished ends: ringing -> ready, on_call -> wrap_up.
        """
        if not self.logged_in:
            return []
        if self.call and self.call.get("uniqueid") not in live_calls:
            if self.status == "ringing":
                self._set("ready")
                self.call = None
            elif self.status == "on_call":
                self._set("wrap_up", WRAP_UP_REASON)
                self._end_call(self.since)
        paused = self.status in ("paused", "wrap_up")  # ringing/on_call members are unpaused (busy)
        reason = self.reason if paused else ""
        out: list[Action] = []
        for queue, penalty in memberships(self.skills):
            have = members.get(queue)
            if have is None:
                out.append(
                    actions.queue_add(queue, self.interface, penalty=penalty, member_name=self.username, paused=paused)
                )
            elif int(have.get("penalty", penalty)) != penalty:
                out.append(actions.queue_penalty(self.interface, penalty, queue=queue))
        mismatch = any(bool(m.get("paused")) != paused for m in members.values())
        if out or mismatch:
            out.append(actions.queue_pause(self.interface, paused, reason=reason))
        return out

    # ------------------------------------------------------------------ chats (blended)

    def can_take_chat(self) -> bool:
        return self.status in ("ready", "on_call", "ringing", "wrap_up") and len(self.chats) < self.max_chats

    def take_chat(self, contact_id: str, journey_id: str, channel: str = "chat", now: float | None = None) -> None:
        self.chats.add(contact_id)
        self._remember(Contact(journey_id, contact_id, channel, time.time() if now is None else now))

    def drop_chat(self, contact_id: str, now: float | None = None) -> None:
        self.chats.discard(contact_id)
        self._end(lambda c: c.contact_id == contact_id and c.channel != "call", now)

    # ------------------------------------------------------------------ contacts

    def _remember(self, contact: Contact) -> None:
        """Append; past ``RECENT_CONTACTS`` the oldest *ended* contacts go (an open one never does)."""
        self.contacts.append(contact)
        excess = len(self.contacts) - RECENT_CONTACTS
        if excess > 0:
            ended = [c for c in self.contacts if not c.open][:excess]
            self.contacts = [c for c in self.contacts if not any(c is e for e in ended)]

    def _end_call(self, now: float) -> None:
        uniqueid = (self.call or {}).get("uniqueid")
        self._end(lambda c: c.channel == "call" and c.contact_id == uniqueid, now)

    def _end(self, which: Callable[[Contact], bool], now: float | None) -> None:
        at = time.time() if now is None else now
        for contact in self.contacts:
            if contact.open and which(contact):
                contact.ended_at = at
