"""ivr.logs: the call id on every line, set per task."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator

import pytest

from ivr import logs
from ivr.errors import ConfigError


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """setup_logging's handler, pointed at a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    logs.setup_logging("debug")
    ours = [h for h in root.handlers if isinstance(h, logs._IvrHandler)]
    assert len(ours) == 1
    buffer = io.StringIO()
    ours[0].setStream(buffer)
    try:
        yield buffer
    finally:
        for handler in root.handlers[:]:
            if handler not in saved[1]:
                root.removeHandler(handler)
        root.setLevel(saved[0])


LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) ([\w.]+) \[([^\]]+)\] (.*)")


def parsed(buffer: io.StringIO) -> list[tuple[str, ...]]:
    out = []
    for line in buffer.getvalue().splitlines():
        match = LINE.fullmatch(line)
        assert match, line
        out.append(match.groups())
    return out


def test_format_and_default_call_id(captured: io.StringIO) -> None:
    logging.getLogger("ivr.agi").info("hello %s", "there")
    assert parsed(captured) == [("INFO", "ivr.agi", "-", "hello there")]


async def test_call_id_is_per_task(captured: io.StringIO) -> None:
    log = logging.getLogger("ivr.test")

    async def call(uid: str) -> None:
        logs.call_id.set(uid)
        await asyncio.sleep(0)
        log.warning("in call")

    await asyncio.gather(call("1732560000.12"), call("1732560000.13"))
    log.warning("outside")
    assert sorted(line for line in parsed(captured) if line[1] == "ivr.test") == [
        ("WARNING", "ivr.test", "-", "outside"),
        ("WARNING", "ivr.test", "1732560000.12", "in call"),
        ("WARNING", "ivr.test", "1732560000.13", "in call"),
    ]


def test_explicit_call_id_wins(captured: io.StringIO) -> None:
    logging.getLogger("x").error("m", extra={"call_id": "given"})
    assert parsed(captured)[0][2] == "given"


def test_level_is_applied(captured: io.StringIO) -> None:
    logs.setup_logging("WARNING")  # again: replaces its own handler, does not add a second
    root = logging.getLogger()
    assert sum(isinstance(h, logs._IvrHandler) for h in root.handlers) == 1
    assert root.level == logging.WARNING


def test_unknown_level() -> None:
    with pytest.raises(ConfigError):
        logs.setup_logging("chatty")


def test_filter_tags_records_from_any_logger() -> None:
    record = logging.LogRecord("third.party", logging.INFO, __file__, 1, "m", None, None)
    token = logs.call_id.set("42.1")
    try:
        assert logs.CallIdFilter().filter(record)
    finally:
        logs.call_id.reset(token)
    assert record.__dict__["call_id"] == "42.1"
