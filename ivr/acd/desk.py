"""What agents' desktops ask of the ACD, from whichever node holds their websocket.

Why: only the ACD leader (``ivr.acd.leader``) holds AMI and the agents' live states, but an
agent's browser may be connected to any node. Every desktop command goes through :class:`AcdDesk`:
on the leader it runs on the local :class:`ivr.acd.service.Acd`; on a follower it is published on
the bus topic ``acd.commands`` with this node's reply topic, and the leader's desk runs it and
answers. A command nobody answers within ``timeout`` (no leader yet: a takeover is under way) is a
:class:`LeaderUnavailable` the desktop shows as an error: never silently lost, never run twice
(the follower does not resend it; the agent does, once a leader answers).

A new leader knows nothing of the agents logged in through other nodes (their states lived in the
old leader's memory). It announces itself on ``acd.leader``, and every node logs its desktops'
agents in again through it: they come back paused, as after an Asterisk restart, so no call rings
at a screen nobody has confirmed.

Commands and replies (plain dicts on the bus)::

    acd.commands        {"id", "reply_to", "op", "agent_id", "args"}   (op "call": click-to-call, its
                        result {"journey_id", "number"}; refusals come back as "value" errors)
    acd.replies.<node>  {"id", "ok": true} | {"id", "ok": false, "kind": "permission"|"value", "error"}
    acd.leader          {"node", "token"}

``sip.grant`` (``endpoint``, ``nonce``, ``tag``) and ``sip.revoke`` (``endpoint``, ``nonce``)
create and delete the SIP credentials of an agent's browser softphone (``ivr.acd.sipcreds``): the
leader holds AMI. They come from the desktop's own code (a sign-in, a logout, a session found
revoked, the last tab closed for longer than the grace), never from a browser's message. No
password is on the bus, in a log line or in a reply: the node serving the page and the leader
derive it alike from the nonce (:class:`ivr.acd.sipcreds.SoftphoneKeys`). A revoke naming a nonce
the leader no longer holds for that endpoint is a late one (the agent signed in again since,
maybe on another node) and deletes nothing.

A dead controller cannot revoke: on taking the lead (and on every AMI connection while leading)
the leader deletes the whole astdb family with ``DBDelTree`` and puts back only the grants it
holds; every node re-sends its live grants with the logins, so an open page's password keeps
working and any other left in astdb is gone.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ivr.acd import sipcreds
from ivr.acd.chat import ChatContact
from ivr.acd.sipcreds import Grant, SoftphoneKeys
from ivr.acd.topics import agent_topic
from ivr.aio import cancel_and_wait, wait_cancelled, wait_for
from ivr.ami.actions import Action
from ivr.ami.client import AmiError
from ivr.bus.pubsub import Bus, Message, Subscription

if TYPE_CHECKING:
    from ivr.acd.outbound import Outbound
    from ivr.acd.service import Acd

log = logging.getLogger(__name__)

COMMANDS = "acd.commands"
LEADER = "acd.leader"
#: seconds a follower waits for the leader's answer: the lease's takeover time fits in it twice
REPLY_TIMEOUT = 4.0
OPS = (
    "login",
    "logout",
    "ready",
    "pause",
    "finish",
    "painted",
    "chat.send",
    "chat.end",
    "closed",
    "sip.grant",
    "sip.revoke",
    "transfer",
    "transfer.complete",
    "transfer.cancel",
    "call",
)
#: what other parts of a node ask of the leader's ACD (never a desktop: the web never names these)
SERVICE_OPS = ("chat.offer", "chat.customer", "chat.leave")
#: chats a follower remembers the agent of (the oldest forgotten first: its page's next offer asks
#: the leader again, which answers with the same agent)
REMEMBERED_CHATS = 10_000


def reply_topic(node: str) -> str:
    return f"acd.replies.{node}"


class LeaderUnavailable(RuntimeError):
    """No ACD leader answered in time (a takeover is under way): the agent should try again."""


class AcdDesk:
    """Owned by the App: ``start``/``stop`` read this node's replies and leader announcements;
    ``serve``/``unserve`` (the leader's duties) answer every node's commands."""

    def __init__(
        self,
        acd: Acd,
        bus: Bus,
        *,
        node: str,
        is_leader: Callable[[], bool],
        timeout: float = REPLY_TIMEOUT,
        outbound: Outbound | None = None,
        keys: SoftphoneKeys | None = None,
    ) -> None:
        self.acd = acd
        #: softphone passwords come from these; None: a key of this process's own (one node)
        self.keys = keys or SoftphoneKeys.random()
        #: the softphone grants this node made for its pages, by agent (re-sent to a new leader)
        self.grants: dict[str, Grant] = {}
        #: the leader's current grant of each browser endpoint (what it puts back after clearing)
        self._granted: dict[str, Grant] = {}
        #: click-to-call on the leader (None: no AMI here, the op says it is unavailable)
        self.outbound = outbound
        self.bus = bus
        self.node = node
        self.is_leader = is_leader
        self.timeout = timeout
        self._pending: dict[str, asyncio.Future[Message]] = {}
        #: agents with a desktop open on this node (logged in again through a new leader)
        self.agents: dict[str, dict[str, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: asyncio.Task[None] | None = None
        if acd.ami is not None:
            acd.ami.on_connected(self._reconcile_credentials)

    # ------------------------------------------------------------------ every node

    async def start(self) -> None:
        replies = await self.bus.subscribe(reply_topic(self.node))
        leaders = await self.bus.subscribe(LEADER)
        self._tasks = [
            asyncio.create_task(self._read(replies, self._answered), name="acd-desk-replies"),
            asyncio.create_task(self._read(leaders, self._new_leader), name="acd-desk-leaders"),
        ]

    async def stop(self) -> None:
        await self.unserve()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            await wait_cancelled(task)
        self._tasks = []

    async def _read(self, sub: Subscription, handle: Callable[[Message], Any]) -> None:
        async with sub:
            async for message in sub:
                try:
                    await handle(message)
                except Exception:  # one bad message must not stop the reader
                    log.exception("ACD desk message not handled: %s", message.get("op") or message.get("id"))

    async def run(self, op: str, agent_id: str, **args: Any) -> Any:
        """Run a desktop command on the ACD leader, here or over the bus; returns what it returned
        (None for the desktop's commands). Raises what the ACD raises (PermissionError,
        ValueError), or LeaderUnavailable."""
        if op not in OPS + SERVICE_OPS:
            raise ValueError(f"unknown ACD command {op}")
        if op == "login":
            self.agents[agent_id] = args["agent"]
        if self.is_leader():
            return await self.execute(op, agent_id, args)
        command_id = uuid.uuid4().hex
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = answer
        try:
            command = {"id": command_id, "reply_to": self.node, "op": op, "agent_id": agent_id, "args": args}
            await self.bus.publish(COMMANDS, command)
            try:
                reply = await wait_for(answer, self.timeout)
            except TimeoutError:
                log.warning("ACD command %s of agent %s: no leader answered in %.0f s", op, agent_id, self.timeout)
                raise LeaderUnavailable("the contact center is switching controllers: try again") from None
        finally:
            self._pending.pop(command_id, None)
        if not reply.get("ok"):
            error = str(reply.get("error", "refused"))
            raise PermissionError(error) if reply.get("kind") == "permission" else ValueError(error)
        return reply.get("result")

    async def grant_softphone(self, agent_id: str, endpoint: str) -> str:
        """A fresh SIP password for ``endpoint``'s browser phone, put into Asterisk by the leader;
        only the grant (nonce and tag) crosses the bus. Raises like ``run``."""
        grant = self.keys.grant(endpoint)
        self.grants[agent_id] = grant
        try:
            await self.run("sip.grant", agent_id, **grant.to_args())
        except BaseException:
            if self.grants.get(agent_id) == grant:
                del self.grants[agent_id]
            raise
        return self.keys.password(endpoint, grant.nonce)

    async def revoke_softphone(self, agent_id: str, endpoint: str) -> None:
        """Delete the credentials this node granted the agent (or, if it granted none, whatever
        the endpoint has: a session ended elsewhere). Raises like ``run``."""
        grant = self.grants.pop(agent_id, None)
        await self.run("sip.revoke", agent_id, endpoint=endpoint, nonce=grant.nonce if grant else "")

    def closed(self, agent_id: str) -> None:
        """The agent's last desktop on this node closed: not logged in again through a new leader."""
        self.agents.pop(agent_id, None)

    async def _answered(self, reply: Message) -> None:
        answer = self._pending.get(str(reply.get("id")))
        if answer is not None and not answer.done():
            answer.set_result(reply)

    async def _new_leader(self, message: Message) -> None:
        """Log this node's desktops' agents in again through the new leader (it has no state of them)."""
        if message.get("node") == self.node:
            return  # the leader itself logged its own desktops' agents in on taking over
        await self._relogin()

    async def _relogin(self) -> None:
        for agent_id, agent in list(self.agents.items()):
            try:
                await self.run("login", agent_id, agent=agent)
            except (LeaderUnavailable, PermissionError, ValueError) as exc:
                log.warning("agent %s not logged in again through the new ACD leader: %s", agent["username"], exc)
        for agent_id, grant in list(self.grants.items()):
            # the new leader cleared astdb: the open pages' passwords go back (the same ones)
            try:
                await self.run("sip.grant", agent_id, **grant.to_args())
            except (LeaderUnavailable, PermissionError, ValueError) as exc:
                log.warning("softphone of agent %s not granted again through the new ACD leader: %s", agent_id, exc)

    # ------------------------------------------------------------------ the leader

    async def serve(self, token: int) -> None:
        """Answer every node's commands (this node took the ACD lease), and announce it."""
        if self._serving is None:
            commands = await self.bus.subscribe(COMMANDS)
            self._serving = asyncio.create_task(self._read(commands, self._command), name="acd-desk-commands")
        ami = self.acd.ami
        if ami is not None and ami.is_connected:  # else when it connects (``_reconcile_credentials``)
            await self._reconcile_credentials()
        await self.bus.publish(LEADER, {"node": self.node, "token": token})
        await self._relogin()

    async def _reconcile_credentials(self) -> None:
        """Leave in astdb only the softphone credentials of grants this leader holds: a dead
        controller's (or an earlier leader's) last passwords are deleted, not left to work."""
        if self._serving is None:
            return  # a follower: the leader does this
        try:
            await self._credentials(sipcreds.clear_action(), missing_ok=True)
        except ValueError as exc:
            log.warning("stale softphone credentials not cleared: %s", exc)
            return
        for grant in list(self._granted.values()):
            password = self.keys.password(grant.endpoint, grant.nonce)
            try:
                await self._credentials(sipcreds.grant_action(grant.endpoint, password))
            except ValueError as exc:
                log.warning("softphone of %s not granted again: %s", grant.endpoint, exc)
        log.info("softphone credentials in astdb cleared; %d live ones put back", len(self._granted))

    async def unserve(self) -> None:
        self._granted.clear()  # the next leader gathers them from the nodes again
        if self._serving is not None:
            await cancel_and_wait(self._serving)
            self._serving = None

    async def _command(self, command: Message) -> None:
        reply: Message = {"id": command.get("id"), "ok": True}
        try:
            op, agent_id, args = str(command["op"]), str(command["agent_id"]), command.get("args") or {}
            if op not in OPS + SERVICE_OPS or not isinstance(args, dict):
                raise ValueError(f"unknown ACD command {op}")
            result = await self.execute(op, agent_id, args)
            if result is not None:
                reply["result"] = result
        except PermissionError as exc:
            reply = {"id": command.get("id"), "ok": False, "kind": "permission", "error": str(exc)[:200]}
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            reply = {"id": command.get("id"), "ok": False, "kind": "value", "error": str(exc)[:200]}
        await self.bus.publish(reply_topic(str(command.get("reply_to"))), reply)

    async def execute(self, op: str, agent_id: str, args: dict[str, Any]) -> Any:
        """One command on the local ACD (this node is the leader); what it returns goes back."""
        acd = self.acd
        if op == "chat.offer":
            return await acd.chats.offer(ChatContact.from_dict(args["contact"]))
        if op == "chat.customer":
            return await acd.chats.customer_message(str(args["contact_id"]), str(args["text"])[:4000])
        if op == "chat.leave":
            return await acd.chats.leave(str(args["contact_id"]))
        if op == "login":
            state = await acd.login(args["agent"])
            if state.call and state.status in ("ringing", "on_call"):  # a reload mid-call: the card again
                pop = await acd.pop_for(state.call)
                await self.bus.publish(
                    agent_topic(agent_id), {"type": "pop", "pop": pop, "agent": state.to_dict(), "replay": True}
                )
        elif op == "logout":
            await acd.logout(agent_id)
        elif op == "ready":
            await acd.ready(agent_id)
        elif op == "pause":
            await acd.pause(agent_id, str(args.get("reason", "")))
        elif op == "finish":
            await acd.finish(
                agent_id,
                journey_id=str(args["journey_id"]),
                disposition=str(args.get("disposition", "")),
                notes=str(args.get("notes", "")),
            )
        elif op == "painted":
            await acd.painted(agent_id, float(args["called_at"]), float(args["at"]))
        elif op == "chat.send":
            await acd.chats.agent_message(agent_id, str(args["contact_id"]), str(args["text"])[:4000])
        elif op == "chat.end":
            await acd.chats.close(str(args["contact_id"]), by="agent", agent_id=agent_id)
        elif op == "sip.grant":
            grant = self.keys.check(args)
            self._granted[grant.endpoint] = grant
            password = self.keys.password(grant.endpoint, grant.nonce)
            await self._credentials(sipcreds.grant_action(grant.endpoint, password))
        elif op == "sip.revoke":
            endpoint, nonce = str(args["endpoint"]), str(args.get("nonce") or "")
            held = self._granted.get(endpoint)
            if nonce and held is not None and held.nonce != nonce:
                return None  # a late revoke: the endpoint was granted again since
            self._granted.pop(endpoint, None)
            await self._credentials(sipcreds.revoke_action(endpoint), missing_ok=True)
        elif op == "transfer":
            return await acd.transfers.start(
                agent_id,
                journey_id=str(args["journey_id"]),
                kind=args.get("kind"),
                value=args.get("target"),
                mode=args.get("mode"),
                note=args.get("note"),
            )
        elif op == "transfer.complete":
            await acd.transfers.complete(agent_id)
        elif op == "transfer.cancel":
            await acd.transfers.cancel(agent_id)
        elif op == "call":  # click-to-call (ivr.acd.outbound): the agent's phone first, then the customer
            if self.outbound is None:
                raise ValueError("calling out is not available on this controller")
            journey_id = args.get("journey_id")
            return await self.outbound.call(agent_id, str(args["number"])[:64], str(journey_id) if journey_id else None)
        elif op == "closed":
            # the agent's last screen closed: no call may ring there unannounced
            current = acd.states.get(agent_id)
            if current is not None and current.status == "ready":
                await acd.pause(agent_id, "desktop closed")
        return None

    async def _credentials(self, action: Action, *, missing_ok: bool = False) -> None:
        """Send a credential's AMI action; a failure is a ValueError the desktop reports (the
        action's value, the password, is never in its text)."""
        ami = self.acd.ami
        if ami is None:
            raise ValueError("browser softphones need the AMI connection (ami.secret)")
        try:
            await ami.action(action)
        except AmiError as exc:
            if missing_ok and "not found" in str(exc).lower():
                return  # already revoked (another node noticed the same ended session)
            raise ValueError(f"Asterisk refused the softphone's credentials ({action['Action']})") from None


class ChatsViaLeader:
    """Blended chat offers from any node's chat pages (:class:`ivr.acd.chat.BlendedChats`).

    Why: the agents and their chat slots live in the ACD leader's memory, so a chat page served by
    a follower offering the chat to its own ACD would find no agent. On the leader this is its
    :class:`ivr.acd.chat.ChatOffers`; elsewhere the offer and the customer's messages go to the
    leader by the desk's command path (the agent's replies come back on ``chat.<contact_id>``
    through the bus, as on the leader). A follower remembers which agent took the chats it
    offered; a message the leader no longer relates to an agent (it ended, or a new leader
    knows nothing of it) forgets that, and the page's event stream offers the chat again.
    No leader answering is "no agent now": the page keeps offering, as when all agents are busy.
    """

    def __init__(self, desk: AcdDesk) -> None:
        self.desk = desk
        self._assigned: dict[str, str] = {}
        self._left: dict[str, str] = {}

    @property
    def acd(self) -> Acd:
        return self.desk.acd

    async def offer(self, contact: ChatContact) -> str | None:
        if self.desk.is_leader():
            return await self.desk.acd.chats.offer(contact)
        try:
            agent = await self.desk.run("chat.offer", "", contact=contact.to_dict())
        except LeaderUnavailable:
            return None
        if agent is None:
            return None
        self._assigned[contact.contact_id] = str(agent)
        while len(self._assigned) > REMEMBERED_CHATS:
            del self._assigned[next(iter(self._assigned))]
        return str(agent)

    def agent_of(self, contact_id: str) -> str | None:
        if self.desk.is_leader():
            return self.desk.acd.chats.agent_of(contact_id)
        return self._assigned.get(contact_id)

    async def customer_message(self, contact_id: str, text: str) -> bool:
        if self.desk.is_leader():
            return await self.desk.acd.chats.customer_message(contact_id, text)
        if contact_id not in self._assigned:
            return False
        try:
            relayed = bool(await self.desk.run("chat.customer", "", contact_id=contact_id, text=text))
        except LeaderUnavailable:
            return False
        if not relayed:
            self._assigned.pop(contact_id, None)
        return relayed

    async def leave(self, contact_id: str) -> str | None:
        """The customer closed the chat: the leader ends it or logs it abandoned (``ChatOffers.leave``)."""
        if self.desk.is_leader():
            return await self.desk.acd.chats.leave(contact_id)
        try:
            left = await self.desk.run("chat.leave", "", contact_id=contact_id)
        except LeaderUnavailable:
            return None
        self._assigned.pop(contact_id, None)
        if left == "abandoned":
            self._left[contact_id] = "closed"
            while len(self._left) > REMEMBERED_CHATS:
                del self._left[next(iter(self._left))]
        return None if left is None else str(left)

    def left_reason(self, contact_id: str) -> str | None:
        """Why the chat left the queue without an agent. A follower knows of its own pages' leaving;
        the leader's sweep (gone, timed out) reaches the page as ``queue.left`` on the bus."""
        if self.desk.is_leader():
            return self.desk.acd.chats.left_reason(contact_id)
        return self._left.get(contact_id)
