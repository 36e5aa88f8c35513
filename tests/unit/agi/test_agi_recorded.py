"""Replay every byte stream in ``recorded/`` (see recorded/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.agi.protocol import AgiEnvironment, Closed
from tests.unit.agi.agi_wire import replay

RECORDED = Path(__file__).parent / "recorded"
STREAMS = sorted(RECORDED.glob("*.bin"))


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
def test_recorded_stream(path: Path) -> None:
    data = path.read_bytes()
    whole = replay([data])
    assert not any(isinstance(e, str) for e in whole), whole[-1]
    assert isinstance(whole[0], AgiEnvironment)
    assert isinstance(whole[-1], Closed)
    assert replay([data[i : i + 1] for i in range(len(data))]) == whole
    expected = path.with_suffix(".events")
    if expected.exists():
        assert [type(e).__name__ for e in whole] == expected.read_text().split()


def test_there_is_something_to_replay() -> None:
    assert STREAMS, f"no *.bin files in {RECORDED}"
