"""Fuzzing the sans-IO connection: any bytes, any chunking.

Properties: nothing but RemoteProtocolError ever escapes; ``next_event`` never loops (each call
either consumes a line or returns); EOF always ends in ``Closed`` (or the earlier error); and the
events do not depend on how the bytes were chunked.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.agi.protocol import Closed
from tests.unit.agi.agi_wire import ENV_BYTES, chunked
from tests.unit.agi.agi_wire import replay as run

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=10))
def test_random_bytes_as_environment(data: bytes, cuts: list[int]) -> None:
    assert run(chunked(data, cuts)) == run([data])


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=10))
def test_random_bytes_as_replies(data: bytes, cuts: list[int]) -> None:
    assert run(chunked(data, cuts), prefix=ENV_BYTES) == run([data], prefix=ENV_BYTES)


LINES = st.sampled_from(
    [
        b"HANGUP",
        b"200 result=0",
        b"200 result=-1 endpos=120",
        b"200 result=1 (a (b) c)",
        b"200 result= (timeout)",
        b'200 result=1 (speech) endpos=0 results=1 score0=1 text0="x" grammar0=g',
        b"100 result=0 Trying...",
        b"503 result=-2 Memory allocation failure",
        b"510 Invalid or unknown command",
        b"511 Command Not Permitted on a dead channel or intercept routine",
        b"520 Invalid command syntax.  Proper usage not available.",
        b"520-Invalid command syntax.  Proper usage follows:",
        b" Usage: STREAM FILE",
        b"520 End of proper usage.",
        b"",
        b"agi_x: y",
        b"garbage",
    ]
)


@FUZZ
@given(
    st.lists(LINES, max_size=30),
    st.sampled_from([b"\n", b"\r\n"]),
    st.lists(st.integers(0, 2000), max_size=20),
    st.booleans(),
)
def test_plausible_line_soup(lines: list[bytes], ending: bytes, cuts: list[int], with_env: bool) -> None:
    data = b"".join(line + ending for line in lines)
    prefix = ENV_BYTES if with_env else b""
    whole = run([data], prefix=prefix)
    assert run(chunked(data, cuts), prefix=prefix) == whole
    if all(not isinstance(item, str) for item in whole):
        assert isinstance(whole[-1], Closed)


@FUZZ
@given(st.integers(0, len(ENV_BYTES)), st.binary(max_size=50))
def test_truncated_environment_then_anything(cut: int, tail: bytes) -> None:
    outcome = run([ENV_BYTES[:cut], tail])
    assert outcome[-1] == Closed() or isinstance(outcome[-1], str)


ENV_LINES = st.sampled_from(
    [
        b"agi_x: y",
        b"agi_y:z",
        b"agi_arg_1: a b",
        b"k: \xe9\xff",
        b"",
        b"\r",
        b"bad line",
        b"HANGUP",
        b"200 result=0",
    ]
)


@FUZZ
@given(st.lists(ENV_LINES, max_size=40), st.lists(st.booleans(), max_size=40), st.lists(st.integers(0, 800)))
def test_environment_soup_fast_and_line_paths_agree(lines: list[bytes], crlf: list[bool], cuts: list[int]) -> None:
    """The whole-header fast path and the line-at-a-time path must be indistinguishable."""
    endings = [b"\r\n" if i < len(crlf) and crlf[i] else b"\n" for i in range(len(lines))]
    data = b"".join(line + end for line, end in zip(lines, endings, strict=True))
    whole = run([data])
    assert run(chunked(data, cuts)) == whole
    assert run([data[i : i + 1] for i in range(len(data))]) == whole
