"""SMS, pure parts: a turn as one message; the fake SMSC's line format."""

from __future__ import annotations

from ivr.channels.chat import View
from ivr.channels.sms import sms_text
from ivr.flow.model import Choice, Menu, Prompt
from lab.kannel import parse_fake_line

MENU = Menu("m", Prompt("How can we help?"), (Choice("1", "bill", Prompt("paying your bill")),), 4.0, 1)


def test_a_turn_is_one_message_with_the_options() -> None:
    view = View("j", "m", "active", ["Welcome.", "How can we help?"], MENU)
    assert (
        sms_text(view) == "Welcome.\nHow can we help?\n1 - paying your bill\nReply with a number or in your own words."
    )
    assert sms_text(View("j", None, "completed", ["Goodbye."])) == "Goodbye."


def test_fake_smsc_lines() -> None:
    sms = parse_fake_line("5550200 +15551230001 text hello there https://x/c/abc")
    assert sms is not None and (sms.sender, sms.receiver, sms.text) == (
        "5550200",
        "+15551230001",
        "hello there https://x/c/abc",
    )
    data = parse_fake_line("1 2 data caf%C3%A9%0Aline+two")
    assert data is not None and data.text == "caf\u00e9\nline two"
    part = parse_fake_line("5550200 +15551237001 udh %05%00%03%07%02%01 data Welcome+to%0AExample+")
    assert part is not None and part.part == (7, 2, 1) and part.text == "Welcome to\nExample "
    assert parse_fake_line("garbage") is None
    assert parse_fake_line("1 2 udh %05 x") is not None  # a UDH without concatenation: one message
    assert parse_fake_line("1 2 smtp x") is None


def test_the_fake_smsc_reader_joins_split_lines_and_concatenated_parts() -> None:
    from lab.kannel import KannelLab

    lab = KannelLab()
    try:
        lab._add("5550200 +15551230001 text Welcome.")
        lab._add("How can we help?")  # a newline inside the message: the fake SMSC splits it
        lab._add("5550200 +15551230002 udh %05%00%03%09%02%02 data world")
        assert len(lab.received()) == 1  # part 2 of 2 alone is not a message yet
        lab._add("5550200 +15551230002 udh %05%00%03%09%02%01 data hello+")
        first, second = lab.received()
        assert first.text == "Welcome.\nHow can we help?"
        assert (second.receiver, second.text) == ("+15551230002", "hello world")
    finally:
        lab.cleanup()
