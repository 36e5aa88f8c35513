"""VoiceChannel.menu on keys against scripted AGI replies: the literal commands a menu sends.

A menu is one ``Read()`` (every fragment back to back, any key ends it) and one GET VARIABLE for
the key: no gap between fragments where res_agi would drop a key. A menu offering ``#`` (Read's
terminator) or a Read that fails is played fragment by fragment with STREAM FILE instead.
"""

from __future__ import annotations

from typing import cast

from ivr.agi.protocol import Reply
from ivr.agi.server import AgiSession
from ivr.channels.voice import VoiceChannel
from ivr.flow.model import Choice, InputResult, Menu, Prompt

MENU = Menu(
    "main_menu",
    Prompt("How can we help you today?"),
    (
        Choice("1", "pay_bill", Prompt("paying your bill")),
        Choice("2", "outage", Prompt("reporting an outage")),
    ),
    timeout=4,
    attempt=1,
    speech=False,
)
FILES = [
    "ivr/how-can-we-help-you-today-0c77d59a",
    Prompt("For").audio_name(),
    Prompt("paying your bill").audio_name(),
    Prompt("press").audio_name(),
    "digits/1",
    Prompt("For").audio_name(),
    Prompt("reporting an outage").audio_name(),
    Prompt("press").audio_name(),
    "digits/2",
]
READ = f'EXEC Read "IVR_MENU_KEY,{"&".join(FILES)},1,,1,4"'
GET = 'GET VARIABLE "IVR_MENU_KEY"'


def reply(raw: str) -> Reply:
    """``200 result=1 (2)`` -> Reply."""
    result, _, rest = raw.removeprefix("200 result=").partition(" ")
    data = rest[1:-1] if rest.startswith("(") else None
    return Reply(200, result, data, None, raw)


class ScriptedSession:
    def __init__(self, *replies: str) -> None:
        self.replies = [reply(r) for r in replies]
        self.sent: list[str] = []

    async def command(self, line: str) -> Reply:
        self.sent.append(line)
        return self.replies.pop(0)


async def run(session: ScriptedSession, menu: Menu = MENU) -> InputResult:
    result = await VoiceChannel(cast(AgiSession, session)).menu(menu)
    assert not session.replies, "not every scripted reply was used"
    return result


async def test_a_menu_is_one_read_and_the_key_it_left() -> None:
    s = ScriptedSession("200 result=0", "200 result=1 (2)")
    assert await run(s) == InputResult("match", "dtmf", "2")
    assert s.sent == [READ, GET]


async def test_no_key_before_the_timeout_is_noinput() -> None:
    s = ScriptedSession("200 result=0", "200 result=1 ()")
    assert await run(s) == InputResult("noinput", "dtmf")
    s = ScriptedSession("200 result=0", "200 result=0")  # variable never set
    assert await run(s) == InputResult("noinput", "dtmf")


async def test_a_timeout_with_a_fraction_of_a_second_is_passed_as_seconds() -> None:
    from dataclasses import replace

    s = ScriptedSession("200 result=0", "200 result=1 (1)")
    await run(s, replace(MENU, timeout=2.5))
    assert s.sent[0].endswith(',1,,1,2.5"')


async def test_read_failing_plays_the_fragments_one_by_one() -> None:
    # -2: the application is not there; the caller still gets the menu, the key still works.
    s = ScriptedSession("200 result=-2", "200 result=0", "200 result=0", f"200 result={ord('1')}")
    assert await run(s) == InputResult("match", "dtmf", "1")
    assert s.sent == [READ] + [f'STREAM FILE "{f}" "0123456789*#"' for f in FILES[:3]]


async def test_a_menu_offering_pound_is_played_fragment_by_fragment() -> None:
    menu = Menu("m", MENU.prompt, (Choice("1", "a", Prompt("a")), Choice("#", "b", Prompt("b"))), 4, 1, False)
    s = ScriptedSession(*["200 result=0"] * 9, f"200 result={ord('#')}")
    assert await run(s, menu) == InputResult("match", "dtmf", "#")
    assert not [line for line in s.sent if line.startswith("EXEC")]
    assert s.sent[-1] == "WAIT FOR DIGIT 4000"
