"""Replay the AudioSocket streams recorded from the lab's Asterisk 22 (see recorded/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.speech.audiosocket import NEED_DATA, Audio, AudioSocketConnection, Closed, Dtmf, Event, Identified

RECORDED = Path(__file__).parent / "recorded"
STREAMS = sorted(RECORDED.glob("*.bin"))


def replay(pieces: list[bytes]) -> list[Event]:
    conn = AudioSocketConnection()
    events: list[Event] = []
    for piece in [*pieces, b""]:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            assert not isinstance(event, type)
            events.append(event)
            if isinstance(event, Closed):
                return events
    raise AssertionError("no Closed at EOF")


def collapsed(events: list[Event]) -> list[str]:
    names: list[str] = []
    for event in events:
        name = type(event).__name__
        if not (names and names[-1] == name == "Audio"):
            names.append(name)
    return names


@pytest.mark.parametrize("path", STREAMS, ids=[p.stem for p in STREAMS])
def test_recorded_stream(path: Path) -> None:
    data = path.read_bytes()
    whole = replay([data])
    assert isinstance(whole[0], Identified)
    assert whole[-1] == Closed(truncated=0)  # Asterisk writes whole frames
    assert all(len(e.pcm) == 320 for e in whole if isinstance(e, Audio))  # 20 ms of slin per frame
    assert replay([data[i : i + 1] for i in range(len(data))]) == whole
    assert collapsed(whole) == path.with_suffix(".events").read_text().split()


def test_the_key_press_arrives_as_a_dtmf_frame() -> None:
    events = replay([(RECORDED / "asterisk22-speech-then-dtmf.bin").read_bytes()])
    assert [e for e in events if isinstance(e, Dtmf)] == [Dtmf("5")]
    audio_before = sum(1 for e in events[: events.index(Dtmf("5"))] if isinstance(e, Audio))
    assert 3.3 <= audio_before * 0.02 <= 3.8  # pressed at 3.5 s; reported when the key is released


def test_exec_replies() -> None:
    assert (RECORDED / "asterisk22-speech-then-dtmf.agi").read_text().split("\n")[0] == "200 result=0"
    assert (RECORDED / "asterisk22-caller-hangs-up.agi").read_text().split("\n")[:2] == ["200 result=-1", "HANGUP"]


def test_there_is_something_to_replay() -> None:
    assert STREAMS, f"no *.bin files in {RECORDED}"
