"""Command builders, quoting (the inverse of res_agi's parse_args) and reply interpreters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.agi import commands as c
from ivr.agi.protocol import Reply
from ivr.errors import ChannelError, LocalProtocolError, RemoteProtocolError
from tests.unit.agi.agi_wire import idle_connection

# Anything but the three characters a line cannot carry.
carried_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n\r\0"))


def reply(line: str) -> Reply:
    """A Reply exactly as the protocol parses ``line``."""
    conn = idle_connection()
    conn.send_command("NOOP")
    conn.receive_data(line.encode() + b"\n")
    event = conn.next_event()
    assert isinstance(event, Reply)
    return event


# -- quoting -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("", '""'),
        ("hello world", '"hello world"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("tab\there", '"tab\there"'),
    ],
)
def test_quote(arg: str, quoted: str) -> None:
    assert c.quote(arg) == quoted
    assert c.unquote(quoted) == [arg]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b", "\n"])
def test_quote_refuses_line_breaks_and_nul(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        c.quote(bad)


@given(carried_text)
def test_quote_round_trips(arg: str) -> None:
    assert c.unquote(c.quote(arg)) == [arg]


@given(st.lists(carried_text, min_size=1, max_size=6))
def test_quoted_arguments_never_merge_or_split(args: list[str]) -> None:
    assert c.unquote("CMD " + " ".join(c.quote(a) for a in args)) == ["CMD", *args]


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        # behaviours of parse_args() in res/res_agi.c
        ('STREAM FILE "hello world" ""', ["STREAM", "FILE", "hello world", ""]),
        ("a  b\tc", ["a", "b", "c"]),
        ('a"b c"d', ["ab cd"]),
        ("a\\ b", ["a b"]),
        ('\\"x', ['"x']),
        ("trailing\\", ["trailing"]),
        ("x \\", ["x"]),
    ],
)
def test_unquote_matches_parse_args(line: str, argv: list[str]) -> None:
    assert c.unquote(line) == argv


# -- builders ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (c.answer(), "ANSWER"),
        (c.noop(), "NOOP"),
        (c.hangup(), "HANGUP"),
        (c.hangup("PJSIP/trunk-00000001"), 'HANGUP "PJSIP/trunk-00000001"'),
        (c.channel_status(), "CHANNEL STATUS"),
        (c.stream_file("ivr/welcome"), 'STREAM FILE "ivr/welcome" ""'),
        (c.stream_file("ivr/menu", "123*#"), 'STREAM FILE "ivr/menu" "123*#"'),
        (c.control_stream_file("ivr/long"), 'CONTROL STREAM FILE "ivr/long" "" 3000 "#" "*"'),
        (
            c.control_stream_file("ivr/long", "0", 5000, "6", "4", "5"),
            'CONTROL STREAM FILE "ivr/long" "0" 5000 "6" "4" "5"',
        ),
        (c.get_data("ivr/account", 5000, 8), 'GET DATA "ivr/account" 5000 8'),
        (c.wait_for_digit(3000), "WAIT FOR DIGIT 3000"),
        (c.wait_for_digit(-1), "WAIT FOR DIGIT -1"),
        (c.say_digits("0042"), 'SAY DIGITS 0042 ""'),
        (c.say_digits("12", "#"), 'SAY DIGITS 12 "#"'),
        (c.say_number(-15), 'SAY NUMBER -15 ""'),
        (c.set_variable("IVR_ACTION", "fallback"), 'SET VARIABLE IVR_ACTION "fallback"'),
        (c.set_variable("__INHERIT", 'a "b" \\c'), 'SET VARIABLE __INHERIT "a \\"b\\" \\\\c"'),
        (c.set_variable("_X1", ""), 'SET VARIABLE _X1 ""'),
        (c.get_variable("CALLERID(num)"), 'GET VARIABLE "CALLERID(num)"'),
        (c.get_full_variable("${EXTEN}-${CALLERID(num)}"), 'GET FULL VARIABLE "${EXTEN}-${CALLERID(num)}"'),
        (c.get_full_variable("${X}", "PJSIP/a-1"), 'GET FULL VARIABLE "${X}" "PJSIP/a-1"'),
        (c.exec_app("Answer"), "EXEC Answer"),
        (c.exec_app("Queue", "support,t,,,300"), 'EXEC Queue "support,t,,,300"'),
        (c.exec_app("Playback", ["beep", "noanswer"]), 'EXEC Playback "beep,noanswer"'),
        (c.exec_app("Playback", []), "EXEC Playback"),
        (c.exec_app("Set", ['X=say "hi"']), 'EXEC Set "X=say \\"hi\\""'),
        (c.verbose("hello there"), 'VERBOSE "hello there" 1'),
        (c.verbose("x", 4), 'VERBOSE "x" 4'),
        (c.set_music(True), "SET MUSIC ON"),
        (c.set_music(True, "jazz"), 'SET MUSIC ON "jazz"'),
        (c.set_music(False), "SET MUSIC OFF"),
    ],
)
def test_builders(line: str, expected: str) -> None:
    assert line == expected


def test_exec_args_are_one_agi_argument() -> None:
    assert c.unquote(c.exec_app("Dial", ["PJSIP/100", "30", "tT"])) == ["EXEC", "Dial", "PJSIP/100,30,tT"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: c.stream_file(""),
        lambda: c.stream_file("x", "1x"),
        lambda: c.stream_file("a\nb"),
        lambda: c.get_data("x", -1, 4),
        lambda: c.get_data("x", 1000, 0),
        lambda: c.get_data("x", True, 4),  # bool is not a timeout
        lambda: c.get_data("x", 1.5, 4),  # type: ignore[arg-type]
        lambda: c.wait_for_digit(-2),
        lambda: c.say_digits(""),
        lambda: c.say_digits("12a"),
        lambda: c.say_digits("١٢"),  # Arabic-Indic digits are not ASCII
        lambda: c.say_number(2**31),
        lambda: c.verbose("x", 0),
        lambda: c.verbose("x\ny"),
        lambda: c.exec_app("Play back"),
        lambda: c.exec_app("Dial;x"),
        lambda: c.exec_app("Playback", ["a,b"]),
        lambda: c.control_stream_file("x", forward="##"),
        lambda: c.control_stream_file("x", pause="x"),
        lambda: c.hangup(""),
        lambda: c.get_variable(""),
        lambda: c.set_music(True, ""),
    ],
)
def test_builders_refuse_bad_input(build: object) -> None:
    assert callable(build)
    with pytest.raises(LocalProtocolError):
        build()


@pytest.mark.parametrize("name", ["IVR_ACTION", "_X", "__X", "x1", "A", "1ABC", "A__B_"])
def test_valid_variable_names(name: str) -> None:
    assert c.set_variable(name, "v").startswith(f"SET VARIABLE {name} ")


@pytest.mark.parametrize("name", ["", "_", "__", "___X", "A B", "A-B", "CDR(userfield)", "A\n", "É"])
def test_invalid_variable_names(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        c.set_variable(name, "v")


# -- reply interpreters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "digit"),
    [
        ("200 result=0 endpos=9600", None),
        ("200 result=49 endpos=1200", "1"),
        ("200 result=35", "#"),
        ("200 result=42", "*"),
        ("200 result=65", "A"),
    ],
)
def test_digit_from_reply(line: str, digit: str | None) -> None:
    assert c.digit_from_reply(reply(line)) == digit


def test_digit_from_reply_failure() -> None:
    with pytest.raises(ChannelError):
        c.digit_from_reply(reply("200 result=-1 endpos=0"))
    with pytest.raises(RemoteProtocolError):
        c.digit_from_reply(reply("200 result=300"))
    with pytest.raises(RemoteProtocolError):
        c.digit_from_reply(reply("200 result=120"))  # 'x' is not a key
    with pytest.raises(RemoteProtocolError):
        c.digit_from_reply(reply("200 result=abc"))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("200 result=1234", ("1234", False)),
        ("200 result=12 (timeout)", ("12", True)),
        ("200 result= (timeout)", ("", True)),
        ("200 result=", ("", False)),
        ("200 result=1*2", ("1*2", False)),
    ],
)
def test_get_data_digits(line: str, expected: tuple[str, bool]) -> None:
    assert c.get_data_digits(reply(line)) == expected


def test_get_data_digits_failure() -> None:
    with pytest.raises(ChannelError):
        c.get_data_digits(reply("200 result=-1"))
    with pytest.raises(RemoteProtocolError):
        c.get_data_digits(reply("200 result=12x"))


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("200 result=1 (testvariable)", "testvariable"),
        ("200 result=1 (with spaces (and parens))", "with spaces (and parens)"),
        ("200 result=1 ()", ""),
        ("200 result=1", ""),
        ("200 result=0", None),
    ],
)
def test_variable_from_reply(line: str, value: str | None) -> None:
    assert c.variable_from_reply(reply(line)) == value


def test_variable_from_reply_garbage() -> None:
    with pytest.raises(RemoteProtocolError):
        c.variable_from_reply(reply("200 result=-1"))


def test_built_command_passes_the_protocol_checks() -> None:
    value = 'multi word "quoted" \\ value ✓'
    wire = idle_connection().send_command(c.set_variable("X", value))
    assert c.unquote(wire.decode().rstrip("\n")) == ["SET", "VARIABLE", "X", value]
