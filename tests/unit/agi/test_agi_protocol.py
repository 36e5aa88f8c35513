"""Sans-IO FastAGI: literal bytes in, events out."""

from __future__ import annotations

import pytest

from ivr.agi.protocol import (
    _TRANSITIONS,
    MAX_COMMAND_BYTES,
    MAX_ENVIRONMENT_LINES,
    MAX_LINE_BYTES,
    NEED_DATA,
    AgiConnection,
    AgiEnvironment,
    Closed,
    ConnectionState,
    DeadChannel,
    HangupNotice,
    InvalidCommand,
    Reply,
    UsageError,
)
from ivr.errors import LocalProtocolError, RemoteProtocolError
from tests.unit.agi.agi_wire import ENV_BYTES, drain, idle_connection

S = ConnectionState


def state_of(conn: AgiConnection) -> ConnectionState:
    """The state, read through a call so mypy does not pin it to an earlier assertion."""
    return conn.state


def read_env(data: bytes) -> AgiEnvironment:
    conn = AgiConnection()
    conn.receive_data(data)
    event = conn.next_event()
    assert isinstance(event, AgiEnvironment)
    assert conn.state is S.IDLE
    return event


def reply_to(line: bytes, conn: AgiConnection | None = None) -> object:
    conn = conn or idle_connection()
    conn.send_command("NOOP")
    conn.receive_data(line)
    return conn.next_event()


# -- environment ---------------------------------------------------------------------------------


def test_environment_fields_and_helpers() -> None:
    env = read_env(ENV_BYTES)
    assert env.variables["agi_network"] == "yes"
    assert env.network_script == "inbound?flow=x"
    assert env.route == "inbound"
    assert env.params == {"flow": "x"}
    assert env.request == "agi://127.0.0.1:4573/inbound?flow=x"  # colons in a value survive
    assert env.uniqueid == "1732560000.12"
    assert env.channel == "PJSIP/trunk-00000001"
    assert env.callerid == "5551234"
    assert env.calleridname == "Jane Caller"
    assert env.dnid == "8005550100"
    assert env.extension == "8005550100"
    assert env.context == "from-trunk"
    assert env.language == "en"
    assert env.arguments == ("one", "two words")
    assert env.variables["agi_accountcode"] == ""  # "agi_accountcode: " -> empty
    assert env.get("threadid") == "139872265926336"
    assert env.get("agi_type") == "PJSIP"
    assert env.get("missing", "dflt") == "dflt"


def test_environment_with_crlf_is_identical() -> None:
    assert read_env(ENV_BYTES.replace(b"\n", b"\r\n")) == read_env(ENV_BYTES)


def test_environment_byte_at_a_time() -> None:
    conn = AgiConnection()
    for i in range(len(ENV_BYTES) - 1):
        conn.receive_data(ENV_BYTES[i : i + 1])
        assert conn.next_event() is NEED_DATA
    conn.receive_data(ENV_BYTES[-1:])
    assert conn.next_event() == read_env(ENV_BYTES)
    assert conn.next_event() is NEED_DATA


@pytest.mark.parametrize(
    ("script", "route", "params"),
    [
        ("inbound?flow=bench", "inbound", {"flow": "bench"}),
        ("/inbound", "inbound", {}),
        ("//support/?a=1&b=&c=x%20y", "support", {"a": "1", "b": "", "c": "x y"}),
        ("", "", {}),
    ],
)
def test_route_and_params(script: str, route: str, params: dict[str, str]) -> None:
    env = AgiEnvironment({"agi_network_script": script} if script else {})
    assert env.route == route
    assert env.params == params


def test_environment_without_arguments() -> None:
    assert AgiEnvironment({"agi_arg_2": "orphan"}).arguments == ()


def test_non_utf8_caller_name_does_not_kill_the_call() -> None:
    env = read_env(b"agi_calleridname: Jos\xe9\nagi_network_script: x\n\n")
    assert env.calleridname == "Jos\ufffd"


def test_duplicate_key_keeps_last() -> None:
    assert read_env(b"agi_x: 1\nagi_x: 2\n\n").variables == {"agi_x": "2"}


def test_value_without_space_after_colon() -> None:
    assert read_env(b"agi_x:1\n\n").variables == {"agi_x": "1"}


def test_data_after_the_environment_in_the_same_chunk() -> None:
    conn = AgiConnection()
    conn.receive_data(ENV_BYTES + b"HANGUP\n")
    assert [type(e) for e in drain(conn)] == [AgiEnvironment, HangupNotice]
    assert conn.hung_up


@pytest.mark.parametrize(
    "line",
    [
        b"agi_request\n",  # no colon
        b"agi request: x\n",  # space in the key
        b": value\n",  # empty key
        b"GET / HTTP/1.1\r\n",  # an HTTP health check
        b"HANGUP\n",  # not before the environment is complete
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",  # a TLS ClientHello
    ],
)
def test_malformed_environment_line(line: bytes) -> None:
    conn = AgiConnection()
    conn.receive_data(b"agi_network: yes\n" + line)
    with pytest.raises(RemoteProtocolError, match="malformed AGI environment line"):
        conn.next_event()


def test_malformed_environment_line_raises_with_the_line() -> None:
    conn = AgiConnection()
    conn.receive_data(b"agi_network: yes\nGET / HTTP/1.1\r\n")
    with pytest.raises(RemoteProtocolError, match="GET / HTTP"):
        conn.next_event()
    assert conn.state is S.ERROR
    with pytest.raises(RemoteProtocolError):  # stays broken
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send_command("NOOP")


def test_empty_environment_is_rejected() -> None:
    conn = AgiConnection()
    conn.receive_data(b"\n")
    with pytest.raises(RemoteProtocolError, match="empty"):
        conn.next_event()


def test_too_many_environment_lines() -> None:
    conn = AgiConnection()
    conn.receive_data(b"".join(b"agi_x%d: y\n" % i for i in range(MAX_ENVIRONMENT_LINES + 1)))
    with pytest.raises(RemoteProtocolError, match="longer than"):
        conn.next_event()


def test_repeating_one_key_does_not_dodge_the_line_bound() -> None:
    conn = AgiConnection()
    for _ in range(MAX_ENVIRONMENT_LINES + 1):
        conn.receive_data(b"agi_x: y\n")
        try:
            conn.next_event()
        except RemoteProtocolError as exc:
            assert "longer than" in str(exc)
            return
    raise AssertionError("no error after too many lines")


def test_environment_at_the_line_limit_is_fine() -> None:
    data = b"".join(b"agi_x%d: y\n" % i for i in range(MAX_ENVIRONMENT_LINES)) + b"\n"
    assert len(read_env(data).variables) == MAX_ENVIRONMENT_LINES


# -- EOF anywhere ----------------------------------------------------------------------------------


@pytest.mark.parametrize("crlf", [False, True])
def test_eof_at_every_offset_of_the_environment_is_closed(crlf: bool) -> None:
    data = ENV_BYTES.replace(b"\n", b"\r\n") if crlf else ENV_BYTES
    for offset in range(len(data)):
        conn = AgiConnection()
        conn.receive_data(data[:offset])
        conn.receive_data(b"")
        assert drain(conn) == [Closed()], offset
        assert conn.state is S.CLOSED
        assert conn.next_event() == Closed()  # and again, never an exception or a hang


REPLIES = [
    b"200 result=0\n",
    b'200 result=1 (speech) endpos=0 results=1 score0=900 text0="hi (there)" grammar0=g\n',
    b"510 Invalid or unknown command\n",
    b"520-Invalid command syntax.  Proper usage follows:\nUsage: GET DATA\n520 End of proper usage.\n",
    b"100 result=0 Trying...\n200 result=0 Gosub complete\n",
    b"HANGUP\n511 Command Not Permitted on a dead channel or intercept routine\n",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_eof_at_every_offset_of_a_reply_is_closed(reply: bytes) -> None:
    for offset in range(len(reply) + 1):
        conn = idle_connection()
        conn.send_command("NOOP")
        conn.receive_data(reply[:offset])
        conn.receive_data(b"")
        events = drain(conn)
        assert events[-1] == Closed(), (offset, events)
        replies = [e for e in events if not isinstance(e, HangupNotice | Closed)]
        assert len(replies) == (1 if offset == len(reply) else 0), (offset, events)


def test_eof_once_then_data_is_our_bug() -> None:
    conn = AgiConnection()
    conn.receive_data(b"")
    conn.receive_data(b"")  # repeated EOF is fine
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"x")


# -- replies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "code", "result", "data", "endpos"),
    [
        ("200 result=0", 200, "0", None, None),
        ("200 result=1 (testvariable)", 200, "1", "testvariable", None),
        ("200 result=49 endpos=8640", 200, "49", None, 8640),
        ("200 result=-1 endpos=0", 200, "-1", None, 0),
        ("200 result=-1", 200, "-1", None, None),
        ("200 result= (timeout)", 200, "", "timeout", None),
        ("200 result=12*3 (timeout)", 200, "12*3", "timeout", None),
        ("200 result=35 (dtmf) endpos=5000", 200, "35", "dtmf", 5000),
        ("200 result=0 (hangup) endpos=-1", 200, "0", "hangup", -1),
        ("200 result=1 (digit) digit=5 endpos=1234", 200, "1", "digit", 1234),
        (
            '200 result=1 (speech) endpos=0 results=1 score0=900 text0="a (b) c" grammar0=yesno',
            200,
            "1",
            "speech",
            0,
        ),
        ("200 result=1 (a value with spaces (and parens))", 200, "1", "a value with spaces (and parens)", None),
        ("200 result=1 (a) b (c)", 200, "1", "a) b (c", None),
        ("200 result=1 (x) endpos=5)", 200, "1", "x) endpos=5", None),
        ("200 result=1 ()", 200, "1", "", None),
        ("200 result=1 (unbalanced", 200, "1", None, None),
        ("200 result=0 Gosub complete", 200, "0", None, None),
        ("200 result=6", 200, "6", None, None),
        ("503 result=-2 Memory allocation failure", 503, "-2", None, None),
    ],
)
def test_reply_parsing(line: str, code: int, result: str, data: str | None, endpos: int | None) -> None:
    for ending in ("\n", "\r\n"):
        event = reply_to((line + ending).encode())
        assert event == Reply(code=code, result=result, data=data, endpos=endpos, raw=line)


def test_result_int() -> None:
    assert Reply(200, "-1", None, None, "200 result=-1").result_int == -1
    with pytest.raises(RemoteProtocolError):
        _ = Reply(200, "12*", None, None, "200 result=12*").result_int


def test_reply_byte_at_a_time(idle_conn: AgiConnection) -> None:
    data = b"200 result=1 (some value) endpos=77\r\n"
    assert idle_conn.send_command("GET VARIABLE X") == b"GET VARIABLE X\n"
    assert state_of(idle_conn) is S.AWAITING_REPLY
    for byte in data[:-1]:
        idle_conn.receive_data(bytes([byte]))
        assert idle_conn.next_event() is NEED_DATA
    idle_conn.receive_data(data[-1:])
    assert idle_conn.next_event() == Reply(200, "1", "some value", 77, "200 result=1 (some value) endpos=77")
    assert idle_conn.state is S.IDLE


def test_provisional_100_is_skipped(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(b"100 result=0 Trying...\n")
    assert awaiting_conn.next_event() is NEED_DATA
    assert awaiting_conn.state is S.AWAITING_REPLY
    awaiting_conn.receive_data(b"200 result=0 Gosub complete\n")
    assert isinstance(awaiting_conn.next_event(), Reply)


def test_invalid_command(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(b"510 Invalid or unknown command\n")
    assert awaiting_conn.next_event() == InvalidCommand("510 Invalid or unknown command")
    assert awaiting_conn.state is S.IDLE


def test_dead_channel(awaiting_conn: AgiConnection) -> None:
    line = b"511 Command Not Permitted on a dead channel or intercept routine"
    awaiting_conn.receive_data(line + b"\n")
    assert awaiting_conn.next_event() == DeadChannel(line.decode())
    assert awaiting_conn.state is S.IDLE


def test_usage_single_line(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(b"520 Invalid command syntax.  Proper usage not available.\n")
    assert awaiting_conn.next_event() == UsageError("Invalid command syntax.  Proper usage not available.")
    assert awaiting_conn.state is S.IDLE


USAGE_MODERN = (
    b"520-Invalid command syntax.  Proper usage follows:\n"
    b" Usage: GET VARIABLE <variablename>\n"
    b"Returns 0 if variablename is not set.\n"
    b"Example return code: 200 result=1 (testvariable)\n"
    b"HANGUP\n"  # text that merely looks like protocol lines stays usage text
    b"520 End of proper usage.\n"
)


def test_usage_multi_line(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(USAGE_MODERN)
    assert awaiting_conn.next_event() == UsageError(
        " Usage: GET VARIABLE <variablename>\n"
        "Returns 0 if variablename is not set.\n"
        "Example return code: 200 result=1 (testvariable)\n"
        "HANGUP"
    )
    assert awaiting_conn.state is S.IDLE
    assert not awaiting_conn.hung_up
    assert awaiting_conn.next_event() is NEED_DATA


def test_usage_multi_line_old_style_glued_terminator(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(
        b"520-Invalid command syntax.  Proper usage follows:\r\n"
        b"Answers channel if not already in answer state.520 End of proper usage.\r\n"
    )
    assert awaiting_conn.next_event() == UsageError("Answers channel if not already in answer state.")


def test_usage_multi_line_byte_at_a_time(awaiting_conn: AgiConnection) -> None:
    events = []
    for byte in USAGE_MODERN:
        awaiting_conn.receive_data(bytes([byte]))
        events += drain(awaiting_conn)
    assert len(events) == 1
    assert isinstance(events[0], UsageError)


def test_too_long_usage_text(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(b"520-Invalid command syntax.\n" + b"blah\n" * 1001)
    with pytest.raises(RemoteProtocolError, match="usage"):
        drain(awaiting_conn)


# -- HANGUP --------------------------------------------------------------------------------------


def test_hangup_while_idle(idle_conn: AgiConnection) -> None:
    idle_conn.receive_data(b"HANGUP\n")
    assert idle_conn.next_event() == HangupNotice()
    assert idle_conn.hung_up
    assert idle_conn.state is S.IDLE
    # dead mode: commands still go out; most answer 511
    idle_conn.send_command('STREAM FILE beep ""')
    idle_conn.receive_data(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    assert isinstance(idle_conn.next_event(), DeadChannel)


def test_hangup_while_awaiting_a_reply(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(b"HANGUP\r\n")
    assert awaiting_conn.next_event() == HangupNotice()
    assert state_of(awaiting_conn) is S.AWAITING_REPLY
    awaiting_conn.receive_data(b"200 result=-1 endpos=1234\n")
    assert awaiting_conn.next_event() == Reply(200, "-1", None, 1234, "200 result=-1 endpos=1234")
    assert awaiting_conn.state is S.IDLE


def test_reply_then_hangup_then_eof(awaiting_conn: AgiConnection) -> None:
    # what Asterisk writes when the caller hangs up during STREAM FILE (AGIEXITONHANGUP=yes)
    awaiting_conn.receive_data(b"200 result=-1 endpos=9600\nHANGUP\nHANGUP\n")
    awaiting_conn.receive_data(b"")
    assert [type(e) for e in drain(awaiting_conn)] == [Reply, HangupNotice, HangupNotice, Closed]


# -- garbage from the peer -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b"404 Not Found\n", "unknown AGI reply code 404"),
        (b"hello\n", "unrecognised"),
        (b"200\n", "without result="),
        (b"200 foo\n", "without result="),
        (b"2000 result=1\n", "unrecognised"),
        (b"200-result=1\n", "multi-line"),
        (b"\n", "unrecognised"),
        (b"hangup\n", "unrecognised"),
    ],
)
def test_garbage_reply(awaiting_conn: AgiConnection, line: bytes, match: str) -> None:
    awaiting_conn.receive_data(line)
    with pytest.raises(RemoteProtocolError, match=match):
        awaiting_conn.next_event()
    assert awaiting_conn.state is S.ERROR


@pytest.mark.parametrize(
    "line",
    [
        b"200 result=0\n",
        b"510 Invalid or unknown command\n",
        b"511 Command Not Permitted on a dead channel\n",
        b"520 Invalid command syntax.\n",
        b"520-Invalid command syntax.  Proper usage follows:\n",
        b"100 result=0 Trying...\n",
    ],
)
def test_reply_when_no_command_was_sent(idle_conn: AgiConnection, line: bytes) -> None:
    idle_conn.receive_data(line)
    with pytest.raises(RemoteProtocolError, match="no command was sent"):
        idle_conn.next_event()


def test_error_message_is_bounded(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(b"x" * 10_000 + b"\n")
    with pytest.raises(RemoteProtocolError) as info:
        awaiting_conn.next_event()
    assert len(str(info.value)) < 300
    assert "10000 chars" in str(info.value)


def test_over_long_line_without_newline() -> None:
    conn = AgiConnection()
    conn.receive_data(b"agi_x: " + b"y" * MAX_LINE_BYTES)
    with pytest.raises(RemoteProtocolError, match="longer than"):
        conn.next_event()


def test_over_long_line_with_newline(awaiting_conn: AgiConnection) -> None:
    awaiting_conn.receive_data(b"200 result=1 (" + b"y" * MAX_LINE_BYTES + b")\n")
    with pytest.raises(RemoteProtocolError, match="longer than"):
        awaiting_conn.next_event()


def test_long_but_legal_variable_value(awaiting_conn: AgiConnection) -> None:
    value = "v" * 60_000
    awaiting_conn.receive_data(f"200 result=1 ({value})\n".encode())
    event = awaiting_conn.next_event()
    assert isinstance(event, Reply)
    assert event.data == value


def test_long_line_byte_at_a_time_is_linear(awaiting_conn: AgiConnection) -> None:
    # Rescanning the whole buffer on every byte would be quadratic: 60k bytes -> 1.8e9 steps.
    line = b"200 result=1 (" + b"z" * 60_000 + b")\n"
    for i in range(len(line)):
        awaiting_conn.receive_data(line[i : i + 1])
        event = awaiting_conn.next_event()
    assert isinstance(event, Reply)


# -- our own misuse ------------------------------------------------------------------------------


def test_command_before_environment() -> None:
    conn = AgiConnection()
    with pytest.raises(LocalProtocolError, match="environment"):
        conn.send_command("ANSWER")


def test_two_commands_without_a_reply(awaiting_conn: AgiConnection) -> None:
    with pytest.raises(LocalProtocolError, match="outstanding"):
        awaiting_conn.send_command("ANSWER")
    assert awaiting_conn.state is S.AWAITING_REPLY


@pytest.mark.parametrize("command", ["ANSWER\n", "ANSWER\r", 'SET VARIABLE X "a\0b"', "", "   "])
def test_bad_command_text(idle_conn: AgiConnection, command: str) -> None:
    with pytest.raises(LocalProtocolError):
        idle_conn.send_command(command)
    assert idle_conn.state is S.IDLE  # nothing was sent


def test_command_longer_than_asterisk_reads(idle_conn: AgiConnection) -> None:
    assert idle_conn.send_command("V" * MAX_COMMAND_BYTES) == b"V" * MAX_COMMAND_BYTES + b"\n"
    conn = idle_connection()
    with pytest.raises(LocalProtocolError, match="bytes"):
        conn.send_command("V" * (MAX_COMMAND_BYTES + 1))


def test_command_after_close(idle_conn: AgiConnection) -> None:
    idle_conn.receive_data(b"")
    assert idle_conn.next_event() == Closed()
    with pytest.raises(LocalProtocolError, match="closed"):
        idle_conn.send_command("ANSWER")


def test_unicode_command_is_utf8(idle_conn: AgiConnection) -> None:
    assert idle_conn.send_command('VERBOSE "café" 1') == 'VERBOSE "café" 1\n'.encode()


# -- the transition table ------------------------------------------------------------------------


def test_closed_and_error_are_terminal() -> None:
    for (state, _trigger), new_state in _TRANSITIONS.items():
        if state is S.CLOSED:
            assert new_state is S.CLOSED
        assert state is not S.ERROR
        assert new_state is not S.READING_ENVIRONMENT


def test_every_state_is_reachable() -> None:
    reached = {S.READING_ENVIRONMENT} | set(_TRANSITIONS.values()) | {S.ERROR}
    assert reached == set(S)


def test_full_conversation() -> None:
    conn = AgiConnection()
    conn.receive_data(ENV_BYTES)
    assert isinstance(conn.next_event(), AgiEnvironment)
    script = [
        ("ANSWER", b"200 result=0\n", Reply(200, "0", None, None, "200 result=0")),
        (
            'STREAM FILE "ivr/welcome" "12"',
            b"200 result=50 endpos=12000\n",
            Reply(200, "50", None, 12000, "200 result=50 endpos=12000"),
        ),
        (
            'GET DATA "ivr/account" 5000 8',
            b"200 result=1234 (timeout)\n",
            Reply(200, "1234", "timeout", None, "200 result=1234 (timeout)"),
        ),
        ("FOO", b"510 Invalid or unknown command\n", InvalidCommand("510 Invalid or unknown command")),
        ('SET VARIABLE IVR_ACTION "queue"', b"200 result=1\n", Reply(200, "1", None, None, "200 result=1")),
    ]
    for command, wire, expected in script:
        conn.send_command(command)
        conn.receive_data(wire)
        assert conn.next_event() == expected
        assert conn.state is S.IDLE
    conn.receive_data(b"HANGUP\n")
    conn.receive_data(b"")
    assert drain(conn) == [HangupNotice(), Closed()]
