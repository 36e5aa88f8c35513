"""VoiceChannel.ask against scripted AGI replies: the AGI commands a prefill offer sends and what
the caller's keys become (accept, a new number, type-ahead, silence)."""

from __future__ import annotations

from typing import cast

import pytest

from ivr.agi.protocol import Reply
from ivr.agi.server import AgiSession
from ivr.channels.voice import OFFER_CONFIRM_MS, VoiceChannel
from ivr.flow.model import Ask, InputResult, Prompt

OFFER_FILE = Prompt("We have your account number ending in").audio_name()
CHOICE_FILE = Prompt("Press 1 to use it, or enter another.").audio_name()
ASK_FILE = Prompt("Please enter your account number.").audio_name()


def reply(result: str, data: str | None = None) -> Reply:
    raw = f"200 result={result}" + (f" ({data})" if data else "")
    return Reply(200, result, data, None, raw)


def key(k: str) -> Reply:
    return reply(str(ord(k)))


class ScriptedSession:
    """Answers each AGI command with the next scripted reply; keeps the command lines."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.sent: list[str] = []

    async def command(self, line: str) -> Reply:
        self.sent.append(line)
        return self.replies.pop(0)


def ask(offer: str | None = "5678") -> Ask:
    return Ask(
        "account",
        Prompt("Please enter your account number."),
        "account_number",
        8,
        8,
        6.0,
        1,
        offer=offer,
        offer_prompt=Prompt("We have your account number ending in") if offer else None,
    )


async def run(session: ScriptedSession, command: Ask) -> InputResult:
    result = await VoiceChannel(cast(AgiSession, session)).ask(command)
    assert not session.replies, "not every scripted reply was used"
    return result


async def test_offer_says_the_digits_then_waits_and_a_lone_1_accepts() -> None:
    s = ScriptedSession(reply("0"), reply("0"), reply("0"), key("1"), reply("0"))
    assert await run(s, ask()) == InputResult("match", "dtmf", "1")
    assert s.sent == [
        f'STREAM FILE "{OFFER_FILE}" "0123456789*#"',
        'SAY DIGITS 5678 "0123456789*#"',
        f'STREAM FILE "{CHOICE_FILE}" "0123456789*#"',
        "WAIT FOR DIGIT 6000",
        f"WAIT FOR DIGIT {OFFER_CONFIRM_MS}",
    ]


async def test_1_and_pound_accepts_at_once() -> None:
    s = ScriptedSession(key("1"), key("#"))
    assert await run(s, ask()) == InputResult("match", "dtmf", "1")


async def test_a_new_number_typed_over_the_offer_is_collected() -> None:
    s = ScriptedSession(reply("0"), key("8"), reply("7654321"))
    assert await run(s, ask()) == InputResult("match", "dtmf", "87654321")
    assert s.sent[-1] == 'GET DATA "silence/1" 6000 7'


async def test_a_new_number_starting_with_1_is_not_an_accept() -> None:
    s = ScriptedSession(key("1"), key("2"), reply("345678"))
    assert await run(s, ask()) == InputResult("match", "dtmf", "12345678")
    assert s.sent[-1] == 'GET DATA "silence/1" 6000 6'


async def test_terminator_ends_a_short_entry() -> None:
    s = ScriptedSession(reply("0"), reply("0"), key("4"), reply("2#"))
    assert await run(s, ask()) == InputResult("match", "dtmf", "42")


async def test_silence_is_noinput() -> None:
    s = ScriptedSession(reply("0"), reply("0"), reply("0"), reply("0"))
    assert await run(s, ask()) == InputResult("noinput", "dtmf")


async def test_missing_silence_file_keeps_the_keys_so_far() -> None:
    s = ScriptedSession(key("9"), reply("-1"))
    assert await run(s, ask()) == InputResult("match", "dtmf", "9")


@pytest.mark.parametrize(
    ("get_data", "expected"),
    [
        (reply("12345678"), InputResult("match", "dtmf", "12345678")),
        (reply("", "timeout"), InputResult("noinput", "dtmf")),  # "200 result= (timeout)": no keys
        (reply("12*3", "timeout"), InputResult("match", "dtmf", "12*3")),
        (reply("-1"), InputResult("noinput", "dtmf")),  # the prompt could not be played
    ],
)
async def test_plain_ask_reads_get_data_keys(get_data: Reply, expected: InputResult) -> None:
    s = ScriptedSession(get_data)
    assert await run(s, ask(None)) == expected
    assert s.sent == [f'GET DATA "{ASK_FILE}" 6000 8']
