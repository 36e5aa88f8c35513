"""Acd.rebuild after an AMI (re)connection, against a scripted AMI (QueueStatus + CoreShowChannels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ivr.acd.service import Acd
from ivr.ami import events as ev
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine


class ScriptedAmi:
    def __init__(self, status: list[ev.AmiEvent], channels: list[dict[str, Any]]) -> None:
        self.status = status
        self.channels = channels
        self.sent: list[dict[str, str]] = []

    def on_event(self, handler: Any) -> None: ...
    def on_connected(self, handler: Any) -> None: ...

    async def queue_status(self, queue: str | None = None) -> list[ev.AmiEvent]:
        return self.status

    async def action_list(self, action: dict[str, str]) -> list[dict[str, Any]]:
        return self.channels

    async def action(self, action: dict[str, str]) -> dict[str, str]:
        self.sent.append(action)
        return {"Response": "Success"}

    async def getvar(self, channel: str, variable: str) -> str | None:
        return None


def member(interface: str, queue: str, paused: bool = False) -> ev.QueueMember:
    return ev.QueueMember(0.0, "listed", queue, interface, interface, 0, paused, "", 1, False, 0)


async def test_rebuild_removes_orphans_restores_agents_and_knows_the_waiting_callers(tmp_path: Path) -> None:
    journeys = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    await journeys.start()
    try:
        caller = ev.Channel("PJSIP/trunk-1", "1.1", variables={"IVR_JOURNEY_ID": "j1"})
        ami = ScriptedAmi(
            [
                member("PJSIP/agent1009", "billing"),
                member("PJSIP/agent1001", "main"),
                ev.QueueEntry(0.0, "billing", 1, caller, 42),
            ],
            [{"Event": "CoreShowChannel", "Uniqueid": "1.1"}],
        )
        acd = Acd(ami=ami, journeys=journeys, customers=CustomerStore(journeys.engine))  # type: ignore[arg-type]
        agent = {
            "id": "a1",
            "username": "ann",
            "display_name": "Ann",
            "endpoint": "agent1001",
            "skills": {"billing": 0},
        }
        await acd.login(agent)
        await acd.ready("a1")
        ami.sent.clear()
        await acd.rebuild()
        removed = [(a["Queue"], a["Interface"]) for a in ami.sent if a["Action"] == "QueueRemove"]
        added = [(a["Queue"], a["Paused"]) for a in ami.sent if a["Action"] == "QueueAdd"]
        assert removed == [("billing", "PJSIP/agent1009")]  # nobody logged in owns it
        assert added == [("billing", "false")]  # ann was ready: back in billing, unpaused
        assert acd.waiting["1.1"]["journey_id"] == "j1" and acd.waiting["1.1"]["queue"] == "billing"
        assert acd.rebuilds == 1
        await acd.stop()
    finally:
        await journeys.stop()
