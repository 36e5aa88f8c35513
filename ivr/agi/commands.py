"""AGI command builders and reply interpreters; quoting lives here and nowhere else.

Why one module: every string that reaches Asterisk's command parser goes through ``quote``, so a
caller name with a space or a prompt path with a quote can never split into two arguments or
inject a second command. Builders return the command line *without* the newline
(``AgiConnection.send_command`` adds it and refuses newlines).

res_agi's ``parse_args`` splits on spaces and tabs, toggles quoting on ``"`` and makes ``\\``
escape the next character (any character). ``quote`` is its exact inverse: wrap in double quotes,
escape ``\\`` and ``"``. Newlines, carriage returns and NUL cannot be carried at all (the line
would end early), so they raise LocalProtocolError.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from ivr.agi.protocol import Reply
from ivr.errors import ChannelError, LocalProtocolError, RemoteProtocolError

__all__ = [
    "DTMF_DIGITS",
    "answer",
    "channel_status",
    "control_stream_file",
    "digit_from_reply",
    "exec_app",
    "get_data",
    "get_data_digits",
    "get_full_variable",
    "get_variable",
    "hangup",
    "is_control",
    "noop",
    "quote",
    "say_digits",
    "say_number",
    "set_music",
    "set_variable",
    "stream_file",
    "unquote",
    "variable_from_reply",
    "verbose",
    "wait_for_digit",
]

#: Keys a caller can press (A-D exist on some phones and in SIPp scenarios).
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")

_FORBIDDEN: Final = re.compile(r"[\n\r\0]")
# Channel variable names: letters, digits, underscore; a leading "_" or "__" marks inheritance.
_VARIABLE_NAME: Final = re.compile(r"_{0,2}[A-Za-z0-9][A-Za-z0-9_]*\Z", re.ASCII)
_APP_NAME: Final = re.compile(r"[A-Za-z0-9_]+\Z", re.ASCII)
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
#: Commands Asterisk answers without playing or listening: their round trip is pure latency.
_CONTROL_PREFIXES: Final = (
    "SET VARIABLE ",
    "GET VARIABLE ",
    "GET FULL VARIABLE ",
    "ANSWER",
    "NOOP",
    "CHANNEL STATUS",
    "VERBOSE ",
    "SET MUSIC ",
)


def is_control(line: str) -> bool:
    """The command neither plays nor listens (SET VARIABLE, GET VARIABLE, ANSWER ...), so its round
    trip is what Asterisk and the controller add, never a prompt's length: the figure that shows a
    node falling behind while calls that play prompts look normal."""
    return line.startswith(_CONTROL_PREFIXES)


def quote(arg: str) -> str:
    """One AGI argument, quoted so ``parse_args`` gives back exactly ``arg``."""
    if _FORBIDDEN.search(arg):
        raise LocalProtocolError(f"AGI argument contains a newline or NUL: {arg[:80]!r}")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unquote(line: str) -> list[str]:
    """Split a command line the way res_agi's ``parse_args`` does (for tests and fakes)."""
    args: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    in_word = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
            in_word = True
        elif char == "\\":
            escaped = True  # like parse_args, a backslash alone does not start a word
        elif char == '"':
            quoted = not quoted
            in_word = True
        elif char in " \t" and not quoted:
            if in_word:
                args.append("".join(current))
                current = []
                in_word = False
        else:
            current.append(char)
            in_word = True
    if in_word:
        args.append("".join(current))
    return args


def _int(value: int, what: str, low: int = _INT32_MIN, high: int = _INT32_MAX) -> str:
    # bool is an int subclass; "True" would reach Asterisk as garbage.
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"{what} must be an int, got {value!r}")
    if not low <= value <= high:
        raise LocalProtocolError(f"{what} out of range [{low}, {high}]: {value}")
    return str(value)


def _digits(escape_digits: str) -> str:
    bad = set(escape_digits) - DTMF_DIGITS
    if bad:
        raise LocalProtocolError(f"escape digits must be DTMF keys, got {''.join(sorted(bad))!r}")
    return quote(escape_digits)


def _non_empty(value: str, what: str) -> str:
    if not value:
        raise LocalProtocolError(f"{what} must not be empty")
    return quote(value)


# --------------------------------------------------------------------------------------------
# Builders


def answer() -> str:
    return "ANSWER"


def noop() -> str:
    return "NOOP"


def hangup(channel: str | None = None) -> str:
    """Hang up this channel, or another one by name."""
    return "HANGUP" if channel is None else f"HANGUP {_non_empty(channel, 'channel')}"


def channel_status() -> str:
    return "CHANNEL STATUS"


def stream_file(name: str, escape_digits: str = "") -> str:
    """Play a prompt (no extension); the reply's result is the ASCII code of an escape digit."""
    return f"STREAM FILE {_non_empty(name, 'file name')} {_digits(escape_digits)}"


def control_stream_file(
    name: str,
    escape_digits: str = "",
    skip_ms: int = 3000,
    forward: str = "#",
    rewind: str = "*",
    pause: str = "",
) -> str:
    """Play a prompt the caller can fast-forward, rewind and pause with keys."""
    for key, what in ((forward, "forward"), (rewind, "rewind"), (pause, "pause")):
        if len(key) > 1 or (key and key not in DTMF_DIGITS):
            raise LocalProtocolError(f"{what} key must be one DTMF key or empty, got {key!r}")
    line = (
        f"CONTROL STREAM FILE {_non_empty(name, 'file name')} {_digits(escape_digits)} "
        f"{_int(skip_ms, 'skip_ms', 0)} {quote(forward)} {quote(rewind)}"
    )
    return f"{line} {quote(pause)}" if pause else line


def get_data(name: str, timeout_ms: int, max_digits: int) -> str:
    """Play a prompt and collect up to ``max_digits`` keys ('#' ends input early)."""
    return (
        f"GET DATA {_non_empty(name, 'file name')} {_int(timeout_ms, 'timeout_ms', 0)} "
        f"{_int(max_digits, 'max_digits', 1, 1024)}"
    )


def wait_for_digit(timeout_ms: int) -> str:
    """Wait for one key; ``-1`` waits forever (avoid: every wait should be bounded)."""
    return f"WAIT FOR DIGIT {_int(timeout_ms, 'timeout_ms', -1)}"


def say_digits(digits: str, escape_digits: str = "") -> str:
    if not digits or not digits.isascii() or not digits.isdigit():
        raise LocalProtocolError(f"SAY DIGITS needs decimal digits, got {digits!r}")
    return f"SAY DIGITS {digits} {_digits(escape_digits)}"


def say_number(n: int, escape_digits: str = "") -> str:
    return f"SAY NUMBER {_int(n, 'number')} {_digits(escape_digits)}"


def _variable_name(name: str) -> str:
    if not _VARIABLE_NAME.match(name):
        raise LocalProtocolError(
            f"channel variable name must be [A-Za-z0-9_] with an optional leading _ or __: {name!r}"
        )
    return name


def set_variable(name: str, value: str) -> str:
    return f"SET VARIABLE {_variable_name(name)} {quote(value)}"


def get_variable(name: str) -> str:
    """Read a variable or a dialplan function (``CALLERID(num)``); see ``variable_from_reply``."""
    return f"GET VARIABLE {_non_empty(name, 'variable name')}"


def get_full_variable(expression: str, channel: str | None = None) -> str:
    """Evaluate an expression like ``${CALLERID(num)}-${EXTEN}`` (substitution, unlike GET)."""
    line = f"GET FULL VARIABLE {_non_empty(expression, 'expression')}"
    return line if channel is None else f"{line} {_non_empty(channel, 'channel')}"


def exec_app(app: str, args: str | Sequence[str] = "") -> str:
    """Run a dialplan application: ``exec_app("Playback", ["beep", "noanswer"])``.

    A sequence is joined with ``,`` (the dialplan's separator) and quoted once as AGI's single
    options argument. An element containing ``,`` would silently become two application
    arguments, so it is refused: pass a preformatted string when you mean the dialplan syntax.
    """
    if not _APP_NAME.match(app):
        raise LocalProtocolError(f"application name must be [A-Za-z0-9_]+: {app!r}")
    if not isinstance(args, str):
        for arg in args:
            if "," in arg:
                raise LocalProtocolError(
                    f"EXEC {app}: argument {arg!r} contains ',' which would split it; "
                    "pass one preformatted string instead"
                )
        args = ",".join(args)
    return f"EXEC {app} {quote(args)}" if args else f"EXEC {app}"


def verbose(message: str, level: int = 1) -> str:
    """Log a line on the Asterisk console at verbosity ``level`` (1-4)."""
    return f"VERBOSE {quote(message)} {_int(level, 'level', 1, 4)}"


def set_music(on: bool, class_: str | None = None) -> str:
    """Start (optionally from a music-on-hold class) or stop music on hold."""
    if not on:
        return "SET MUSIC OFF"
    return "SET MUSIC ON" if class_ is None else f"SET MUSIC ON {_non_empty(class_, 'music class')}"


# --------------------------------------------------------------------------------------------
# Reply interpreters


def digit_from_reply(reply: Reply) -> str | None:
    """The key pressed during STREAM FILE / WAIT FOR DIGIT / SAY *: result is its ASCII code.

    ``0`` means no key. A negative result is a failure (the session layer has already turned a
    hangup into CallEnded), so it raises ChannelError.
    """
    code = reply.result_int
    if code == 0:
        return None
    if code < 0:
        raise ChannelError(f"AGI command failed: {reply.raw!r}")
    digit = chr(code) if code < 128 else ""
    if digit not in DTMF_DIGITS:
        raise RemoteProtocolError(f"AGI result is not a DTMF key code: {reply.raw!r}")
    return digit


def get_data_digits(reply: Reply) -> tuple[str, bool]:
    """(digits, timed_out) from a GET DATA reply: ``200 result=12 (timeout)`` -> ("12", True)."""
    if reply.result == "-1":
        raise ChannelError(f"GET DATA failed: {reply.raw!r}")
    digits = reply.result
    if set(digits) - DTMF_DIGITS:
        raise RemoteProtocolError(f"GET DATA result is not DTMF keys: {reply.raw!r}")
    return digits, reply.data == "timeout"


def variable_from_reply(reply: Reply) -> str | None:
    """``200 result=1 (value)`` -> value; ``200 result=0`` -> None (unset)."""
    if reply.result == "1":
        return reply.data if reply.data is not None else ""
    if reply.result == "0":
        return None
    raise RemoteProtocolError(f"unexpected GET VARIABLE reply: {reply.raw!r}")
