"""Every channel renders the command union exhaustively: a command it has no form for is a
``CannotRender`` naming the command and the channel, and the journey takes the engine's safe path."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from ivr.agi.protocol import Reply
from ivr.agi.server import AgiSession
from ivr.channels.chat import FALLBACK_TEXT, TextFlows, View
from ivr.channels.voice import InboundCalls, VoiceChannel
from ivr.errors import CannotRender
from ivr.flow.model import Command, Flow, Handoff, HandoffResult, Journey, Prompt
from ivr.flow.steps import Outcome, ParseContext, Runtime, Step, Wait
from ivr.store.journeys import JourneyStore, make_engine

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Hologram:
    """A command no channel knows (as a new command is, until a channel renders it)."""

    step: str


@dataclass(frozen=True)
class HologramStep(Step):
    KIND = "hologram"

    @classmethod
    def parse(cls, name: str, body: Any, next_: str | None, ctx: ParseContext) -> Step | None:
        return None

    def enter(self, rt: Runtime) -> Outcome:
        return Wait([cast(Command, Hologram(self.name))], "input")


FLOW = Flow(name="odd", version="v1", start="show", steps={"show": HologramStep("show", 1, None)})


class OneFlow:
    def get(self, name: str, version: str | None = None) -> Flow:
        return FLOW


class ScriptedSession:
    """AGI replies in order; every command sent is kept."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.sent: list[str] = []

    async def command(self, line: str) -> Reply:
        self.sent.append(line)
        raw = self.replies.pop(0)
        return Reply(200, raw.removeprefix("200 result="), None, None, raw)

    async def set_variable(self, name: str, value: str) -> None:
        await self.command(f'SET VARIABLE {name} "{value}"')


async def test_voice_refuses_a_command_it_cannot_render_by_name() -> None:
    channel = VoiceChannel(cast(AgiSession, ScriptedSession()))
    with pytest.raises(CannotRender, match="the voice channel cannot render Hologram at step show"):
        await channel.execute([cast(Command, Hologram("show"))])


async def test_chat_refuses_a_command_it_cannot_render_by_name(tmp_path: Path) -> None:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"))
    chat = TextFlows("chat", OneFlow(), store)
    machine = await chat._machine(Journey.new(FLOW, "chat"))
    with pytest.raises(CannotRender, match="the chat channel cannot render Hologram at step show"):
        await chat._execute(machine, [cast(Command, Hologram("show"))], View("j", "show", "active"))


async def test_chat_takes_the_engines_safe_path_instead_of_skipping(tmp_path: Path) -> None:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"), batch_delay=0.001)
    await store.start()
    try:
        journey = Journey.new(FLOW, "sms", caller="+15551230001")
        view = await TextFlows("sms", OneFlow(), store).begin(journey)
        assert view.messages == [FALLBACK_TEXT] and view.status == "failed" and view.waiting is None
        await store.flush()
        saved = await store.get(journey.id)
        assert saved is not None and saved.status == "failed" and saved.waiting is None
        assert "the sms channel cannot render Hologram" in saved.outcome["fallback"]
    finally:
        await store.stop()


async def test_the_voice_route_sends_the_call_to_the_dialplan_fallback(tmp_path: Path) -> None:
    store = JourneyStore(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"), batch_delay=0.001)
    await store.start()
    try:
        calls = InboundCalls(OneFlow(), lambda flow, dialled: FLOW, store)
        session = ScriptedSession("200 result=1")
        journey = Journey.new(FLOW, "voice")
        await calls.run(cast(AgiSession, session), journey)
        assert session.sent == ['SET VARIABLE IVR_ACTION "fallback"']
        assert journey.status == "failed" and "the voice channel cannot render Hologram" in journey.outcome["fallback"]
        assert calls.finished == {"failed": 1}
    finally:
        await store.stop()


async def test_a_handoff_answers_with_its_own_event() -> None:
    command = Handoff("text_me", "chat", "pay_menu", Prompt("Continue here"))
    assert await VoiceChannel(cast(AgiSession, ScriptedSession())).execute([command]) == HandoffResult(
        False, "disabled"
    )

    async def sent(journey: Journey, handoff: Handoff) -> tuple[bool, str]:
        return True, "accepted"

    journey = Journey.new(FLOW, "voice")
    channel = VoiceChannel(cast(AgiSession, ScriptedSession()), journey=journey, handoff=sent)
    assert await channel.execute([command]) == HandoffResult(True, "accepted")


def test_mypy_names_a_channel_whose_match_misses_a_command(tmp_path: Path) -> None:
    """The exhaustive end of a channel's match: leaving out a command is a type error there."""
    module = tmp_path / "partial_channel.py"
    # Every command but Handoff, read from the union itself, so a new command keeps this test true.
    others = [kind.__name__ for kind in typing.get_args(Command) if kind is not Handoff]
    module.write_text(
        textwrap.dedent(
            f"""
            from ivr.channels.rendering import cannot_render
            from ivr.flow.commands import Command, Handoff, {", ".join(others)}


            def render(command: Command) -> str:
                match command:
                    case {" | ".join(f"{name}()" for name in others)}:
                        return "known"
                    case _:
                        cannot_render("partial", command)
            """
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent", str(module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert 'partial_channel.py:11: error: Argument 2 to "cannot_render" has incompatible type "Handoff"' in run.stdout
    module.write_text(module.read_text().replace(f"{others[-1]}():", f"{others[-1]}() | Handoff():"))
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent", str(module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
