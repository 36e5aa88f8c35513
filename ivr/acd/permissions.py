"""What an agent may act on: their own calls and chats, open or recently ended. Pure.

Every desktop action that names a journey or a contact (notes and a disposition, a chat message,
closing a chat) passes through :func:`refusal` before anything is written or relayed. The browser
chooses the ids it sends, so nothing it sends is trusted: the answer comes only from what the ACD
saw happen to this agent (``AgentState.contacts``: calls they answered, chats they were given).

A contact stays the agent's for ``window`` seconds after it ended, so notes can be finished after
the caller hung up or after the agent already pressed Ready, but an agent cannot write into the
timeline of a customer they never spoke to, nor into an old one of their own for ever.
"""

from __future__ import annotations

from ivr.acd.agents import AgentState

#: How long agent-supplied ids may be in a log line: enough to find the row, never a flood.
LOG_CHARS = 40


def refusal(
    state: AgentState | None,
    *,
    journey_id: str | None = None,
    contact_id: str | None = None,
    now: float,
    window: float,
    open_only: bool = False,
) -> str | None:
    """None when the agent may act on the contact named by ``journey_id`` and/or ``contact_id``
    (both must match when both are given), else why not, in words the agent can read.

    ``open_only``: the action only makes sense while the contact lasts (sending a chat message)."""
    if state is None or not state.logged_in:
        return "log in first"
    if not journey_id and not contact_id:
        return "no contact named"
    mine = [
        c
        for c in state.contacts
        if (not journey_id or c.journey_id == journey_id) and (not contact_id or c.contact_id == contact_id)
    ]
    if not mine:
        return "not one of your contacts"
    if any(c.open for c in mine):
        return None
    if open_only:
        return "this contact has ended"
    if any(c.ended_at is not None and now - c.ended_at <= window for c in mine):
        return None
    return f"this contact ended more than {window / 60:g} minutes ago"


def loggable(value: object, limit: int = LOG_CHARS) -> str:
    """A client-supplied value as it may appear in a log line: bounded, quoted, control characters
    escaped (a newline in a user name cannot forge a second log line)."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    text = value
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}…(+{len(text) - limit} chars)"
