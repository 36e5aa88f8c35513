"""Voice renders the queue step's announcement and callback offer with the same prompts, in the
same order, as callers heard before the step owned them: literal AGI commands."""

from __future__ import annotations

from typing import cast

from ivr.agi import commands as agi
from ivr.agi.protocol import Reply
from ivr.agi.server import AgiSession
from ivr.channels.voice import VoiceChannel
from ivr.flow.commands import (
    CALLBACK_OFFER_PROMPT,
    QUEUE_MINUTES_PROMPT,
    QUEUE_POSITION_PROMPT,
    QUEUE_WAIT_PROMPT,
    AnnounceQueue,
    InputResult,
)
from ivr.flow.steps.queue import QueueStep


class ScriptedSession:
    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.sent: list[str] = []

    async def command(self, line: str, *, timeout: float | None = None) -> Reply:
        self.sent.append(line)
        raw = self.replies.pop(0)
        result, _, rest = raw.removeprefix("200 result=").partition(" ")
        return Reply(200, result, rest[1:-1] if rest.startswith("(") else None, None, raw)


async def test_announcement_then_the_offer_as_one_read_of_its_prompt() -> None:
    session = ScriptedSession(*["200 result=0"] * 6, "200 result=1 (1)")
    channel = VoiceChannel(cast(AgiSession, session))
    offer = QueueStep("to_billing", 5, None).offer()
    event = await channel.execute([AnnounceQueue("to_billing", 4, 6), offer])
    assert event == InputResult("match", "dtmf", "1")
    assert session.sent == [
        agi.stream_file(QUEUE_POSITION_PROMPT.audio_name(), ""),
        'SAY NUMBER 4 ""',
        agi.stream_file(QUEUE_WAIT_PROMPT.audio_name(), ""),
        'SAY NUMBER 6 ""',
        agi.stream_file(QUEUE_MINUTES_PROMPT.audio_name(), ""),
        f'EXEC Read "IVR_MENU_KEY,{CALLBACK_OFFER_PROMPT.audio_name()},1,,1,5"',  # no "For ... press" fragments
        'GET VARIABLE "IVR_MENU_KEY"',
    ]
