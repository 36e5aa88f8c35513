"""Bus topic names of the ACD: one place, so the ACD, the chat offers and the web agree on them.

Kept apart from :mod:`ivr.acd.service` so that a module that only publishes or subscribes (the
chat offers, the desktop's websocket, the chat channel) need not import the ACD service.
"""

from __future__ import annotations


def agent_topic(agent_id: str) -> str:
    """Everything one agent's desktop receives (state, pops, chat offers and messages)."""
    return f"agent.{agent_id}"


def chat_topic(contact_id: str) -> str:
    """What the agent says to one chat contact (the chat channel subscribes to it)."""
    return f"chat.{contact_id}"


#: The supervisors' wallboard: a snapshot of queues and agents (``ivr.acd.wallboard``).
WALLBOARD = "supervisor.wallboard"
