"""What the desktop tests build the same way: a started journey store and two agents.

Ann takes billing on ``agent1001``, Bob support on ``agent1002``; each password is
``<name>-password``.
"""

from __future__ import annotations

from pathlib import Path

from ivr.store.agents import AgentStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.web.agents_auth import hash_password

AGENTS = (("ann", "agent1001", {"billing": 0}), ("bob", "agent1002", {"support": 0}))


async def stores_with_two_agents(db: Path) -> tuple[JourneyStore, AgentStore]:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{db}"), batch_delay=0.001)
    await journeys.start()
    agents = AgentStore(journeys.engine)
    for user, endpoint, skills in AGENTS:
        await agents.add(
            username=user,
            display_name=user.title(),
            password_hash=hash_password(f"{user}-password"),
            endpoint=endpoint,
            skills=skills,
            agent_id=user,
        )
    return journeys, agents
