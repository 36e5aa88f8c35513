"""Text channels, pure parts: a typed or tapped reply -> InputResult; views as JSON; masking."""

from __future__ import annotations

from ivr.channels.chat import View, ask_text, mask, menu_text, text_input
from ivr.flow.model import Ask, Choice, Menu, Prompt

MENU = Menu(
    "pay_menu",
    Prompt("How would you like to pay?"),
    (
        Choice("1", "card", Prompt("paying by card"), ("pay", "billing")),
        Choice("0", "agent", Prompt("talking to an agent"), ("agent", "operator")),
    ),
    4.0,
    1,
)
ASK = Ask("amount", Prompt("Please enter the amount."), "amount", 1, 5, 6.0, 1)


def test_a_tapped_button_names_its_option() -> None:
    result = text_input(MENU, "", "card")
    assert (result.status, result.mode, result.utterance, result.interpretation) == ("match", "text", "1", "card")
    assert text_input(MENU, "", "text_me").status == "nomatch"  # not an option of this menu


def test_typed_digits_and_words_use_the_intent_matcher() -> None:
    assert text_input(MENU, "1", None).interpretation == "card"
    assert text_input(MENU, " 0 ", None).interpretation == "agent"
    assert text_input(MENU, "I want to talk to a real person", None).interpretation == "agent"
    assert text_input(MENU, "purple elephants", None).status == "nomatch"
    assert text_input(MENU, "   ", None).status == "noinput"


def test_asks_take_digits_without_separators() -> None:
    assert text_input(ASK, " 1 234 ", None).utterance == "1234"
    assert text_input(ASK, "", None).status == "noinput"


def test_mask_shows_at_most_four_and_never_more_than_half() -> None:
    assert mask("12345678") == "\u2022\u2022\u2022\u20225678"
    assert mask("42") == "\u20222"
    assert mask("[redacted]") == "(kept private)"


def test_texts_and_json() -> None:
    assert menu_text(MENU).splitlines() == [
        "How would you like to pay?",
        "1 - paying by card",
        "0 - talking to an agent",
        "Reply with a number or in your own words.",
    ]
    offer = Ask(
        "account",
        Prompt("Enter it."),
        "account_number",
        8,
        8,
        6.0,
        1,
        offer="5678",
        offer_prompt=Prompt("We have your account number ending in"),
    )
    assert ask_text(offer) == "We have your account number ending in 5678. Reply 1 to use it, or send another."
    view = View("j1", "pay_menu", "active", ["Hello."], MENU, slots={"account_number": "12345678"})
    data = view.to_json()
    assert data["waiting"]["choices"][0] == {"key": "1", "option": "card", "label": "paying by card"}
    assert data["collected"] == {"account_number": "\u2022\u2022\u2022\u20225678"} and not data["done"]
