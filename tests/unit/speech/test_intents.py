"""The intent matcher on literal utterances: digits, small talk, paraphrases, other languages."""

from __future__ import annotations

import pytest

from ivr.flow.model import Choice, Prompt
from ivr.speech.intents import (
    IntentMatch,
    IntentMatcher,
    Lexicon,
    OptionSpec,
    default_lexicon,
    stem,
    to_input_result,
    tokenize,
)
from ivr.speech.recognizer import Transcript

SUPPORT_MENU = (
    OptionSpec("pay_bill", "1", "pay your bill", ("billing", "pay")),
    OptionSpec("outage", "2", "report an outage", ("outage",)),
    OptionSpec("support", "3", "technical support", ("support",)),
    OptionSpec("agent", "0", "talk to an agent", ("agent", "operator")),
)


@pytest.fixture(scope="module")
def matcher() -> IntentMatcher:
    return IntentMatcher(SUPPORT_MENU)


# ---------------------------------------------------------------------------------- text pieces


def test_tokenize_lowercases_and_keeps_inner_apostrophes() -> None:
    assert tokenize("I DON'T know... Wi-Fi?") == ["i", "don't", "know", "wi", "fi"]
    assert tokenize("Счёт!") == ["счет"]
    assert tokenize("") == []


@pytest.mark.parametrize(
    ("words", "same"),
    [
        (["bill", "bills", "billing", "billed"], "bill"),
        (["charge", "charges", "charged", "charging"], "charg"),
        (["pay", "paid", "payment", "payments"], "pay"),
        (["connect", "connection", "connected"], "connect"),
        (["stop", "stopped", "stopping"], "stop"),
        (["счет", "счета", "счету"], "счет"),
        (["оператор", "оператора", "оператором"], "оператор"),
    ],
)
def test_stem_meets_word_forms_at_one_stem(words: list[str], same: str) -> None:
    assert {stem(w) for w in words} == {same}


def test_stem_leaves_short_words_and_contractions() -> None:
    assert [stem(w) for w in ("yes", "no", "bus", "can't", "2")] == ["yes", "no", "bus", "can't", "2"]


# ----------------------------------------------------------------------------------- the table

MENU_TABLE = [
    # digits: only a short reply that is one digit
    ("one", "pay_bill", "digit_1"),
    ("1", "pay_bill", "digit_1"),
    ("One.", "pay_bill", "digit_1"),
    ("option two", "outage", "digit_2"),
    ("Option 2.", "outage", "digit_2"),
    ("press 3 please", "support", "digit_3"),
    ("Zero.", "agent", "digit_0"),
    ("To.", "outage", "digit_2"),  # what a recognizer writes for a lone "two"
    ("seven", None, "digit_7"),  # a digit no option has: the flow says "not a valid choice"
    # not digits
    ("one moment please", None, None),
    ("One moment please.", None, None),
    ("one two", None, None),
    ("ten", None, None),
    ("press zero to reach an operator", "agent", "operator"),
    # noise, empty, small talk
    ("", None, None),
    ("...", None, None),
    ("uh", None, None),
    ("um", None, None),
    ("Oh.", None, None),
    ("hello?", None, None),
    ("Hello hello", None, None),
    ("thank you", None, None),
    ("Thank you.", None, None),
    ("you", None, None),  # Whisper's favourite word for a breath
    ("is anyone there?", None, None),
    ("can you hear me", None, None),
    # what the options say, and paraphrases of it
    ("billing", "pay_bill", "billing"),
    ("Billing.", "pay_bill", "billing"),
    ("I have a question about my bill", "pay_bill", "billing"),
    ("why is my invoice so high", "pay_bill", "billing"),
    ("I was charged twice", "pay_bill", "billing"),
    ("how much do I owe", "pay_bill", "billing"),
    ("I want to pay my bill", "pay_bill", "pay"),
    ("I need to make a payment", "pay_bill", "pay"),
    ("hello I'd like to pay my bill please", "pay_bill", "pay"),
    ("my internet is down", "outage", "outage"),
    ("my wifi stopped working", "outage", "outage"),
    ("the internet isn't working", "outage", "outage"),
    ("I can't get online", "outage", "outage"),
    ("uh I think my internet is broken", "outage", "outage"),
    ("the TV has no signal", "outage", "outage"),
    ("there is an outage in my area", "outage", "outage"),
    ("technical support", "support", "support"),
    ("tech support please", "support", "support"),
    ("I need help setting up my router", "support", "support"),
    ("tecnical suport", "support", "support"),  # a recognizer's spelling, corrected by trigrams
    ("let me talk to a real person", "agent", "agent"),
    ("Agent.", "agent", "agent"),
    ("representative", "agent", "agent"),
    ("operator", "agent", "operator"),
    ("customer service", "agent", "agent"),
    ("get me a human", "agent", "agent"),
    ("I'd like to speak with customer service", "agent", "agent"),
    ("Waiting to speak with a representative.", "agent", "agent"),
    # intents no option of this menu claims: the flow may act on them
    ("yes", None, "yes"),
    ("yeah sure", None, "yes"),
    ("No.", None, "no"),
    ("no thank you", None, "no"),
    ("Goodbye!", None, "goodbye"),
    ("that's all thank you", None, "goodbye"),
    ("can you repeat that", None, "repeat"),
    # unrelated or two things at once: no intent
    ("what's the weather like", None, None),
    ("I'd like to order a pizza", None, None),
    ("what are your opening hours", None, None),
    ("can I speak to someone about my bill", None, None),  # agent or billing? ask again
    # Russian examples ship with the defaults
    ("один", "pay_bill", "digit_1"),
    ("оператор", "agent", "agent"),
    ("не работает интернет", "outage", "outage"),
    ("хочу оплатить счёт", "pay_bill", "pay"),
    ("алло", None, None),
    ("спасибо", None, None),
]


@pytest.mark.parametrize(("text", "option", "intent"), MENU_TABLE)
def test_menu_table(matcher: IntentMatcher, text: str, option: str | None, intent: str | None) -> None:
    found = matcher.match(text)
    assert (found.option, found.intent) == (option, intent), found.reason
    if intent is None:
        assert not found.matched
    else:
        assert found.matched and found.confidence > 0.5, found


def test_exact_answers_are_certain_and_homophones_are_not(matcher: IntentMatcher) -> None:
    assert matcher.match("billing").confidence == 1.0
    assert matcher.match("two").confidence == 1.0
    assert 0.5 < matcher.match("to").confidence < 0.9


def test_reasons_say_why(matcher: IntentMatcher) -> None:
    assert matcher.match("").reason == "empty"
    assert matcher.match("thank you").reason == "small talk"
    assert matcher.match("one moment please").reason == "small talk"
    assert "no intent" in matcher.match("order a pizza").reason
    assert matcher.match("can I speak to someone about my bill").reason.startswith("ambiguous")
    assert matcher.match("option two").reason == "digit 2 -> option outage"


def test_intents_claimed_by_one_option_do_not_compete() -> None:
    """ "pay" and "billing" overlap a lot; both belong to pay_bill, so no ambiguity."""
    found = IntentMatcher(SUPPORT_MENU).match("pay the bill")
    assert found.option == "pay_bill"


def test_flow_examples_in_any_language() -> None:
    korean = IntentMatcher(
        [OptionSpec("agent", "0", "상담원", ("agent",))],
        {"yes": ["네"], "no": ["아니요"]},
        include_defaults=False,
    )
    assert (korean.match("상담원 연결").option, korean.match("상담원 연결").intent) == ("agent", "agent")
    assert korean.match("네").intent == "yes"
    assert korean.match("아니요").intent == "no"
    assert not korean.match("안녕하세요").matched


def test_option_without_intents_matches_its_label() -> None:
    m = IntentMatcher([OptionSpec("hours", "4", "opening hours")], include_defaults=False)
    assert m.match("what are your opening hours").option == "hours"
    assert m.match("four").option == "hours"


def test_from_choices_takes_flow_menu_choices() -> None:
    choices = [
        Choice("1", "pay_bill", Prompt("pay your bill"), ("billing",)),
        Choice("0", "agent", Prompt("talk to an agent"), ("agent",)),
    ]
    m = IntentMatcher.from_choices(choices)
    assert m.match("a question about my invoice").option == "pay_bill"
    assert m.match("zero").option == "agent"


def test_phrases_prime_the_recognizer_with_this_menu_first(matcher: IntentMatcher) -> None:
    phrases = matcher.phrases("en")
    assert phrases[:8] == [
        "pay your bill",
        "one",
        "report an outage",
        "two",
        "technical support",
        "three",
        "talk to an agent",
        "zero",
    ]
    assert "let me talk to a real person" in phrases and "yes" in phrases
    assert not any("оплат" in p for p in phrases)  # Russian examples are not for an English engine
    russian = matcher.phrases("ru")
    assert "оплатить" in russian and "один" in russian and "I want to pay my bill" not in russian


def test_lexicon_from_a_table() -> None:
    lex = Lexicon.from_toml(
        {
            "digits": {"1": ["uno"]},
            "concepts": {"bill": ["factura"]},
            "stopwords": {"es": ["mi"]},
            "intents": {"billing": {"es": ["mi factura"]}},
        }
    )
    m = IntentMatcher([OptionSpec("pay", "1", "", ("billing",))], lexicon=lex)
    assert m.match("uno").option == "pay"
    assert m.match("factura").option == "pay"


def test_default_lexicon_is_parsed_once() -> None:
    assert default_lexicon() is default_lexicon()
    assert {"billing", "pay", "outage", "support", "agent", "operator", "yes", "no", "goodbye"} <= set(
        default_lexicon().intents
    )


# ------------------------------------------------------------------------------- InputResult


def test_to_input_result_statuses() -> None:
    silent = to_input_result(Transcript("", 0.0, "whisper", 0.1), IntentMatch(None, None, 0.0, "empty"))
    assert (silent.status, silent.mode) == ("noinput", "speech")
    chatter = to_input_result(Transcript("thank you", 0.9, "whisper", 0.1), IntentMatch(None, None, 0.0, "small talk"))
    assert (chatter.status, chatter.utterance, chatter.interpretation) == ("nomatch", "thank you", None)
    sure = to_input_result(Transcript("billing", 1.0, "vosk", 0.1), IntentMatch("pay_bill", "billing", 1.0, ""))
    assert (sure.status, sure.interpretation, sure.confidence) == ("match", "pay_bill", 1.0)
    unsure = to_input_result(Transcript("billing", 0.0, "vosk", 0.1), IntentMatch("pay_bill", "billing", 1.0, ""))
    assert unsure.confidence == 0.5
    global_intent = to_input_result(Transcript("bye", 1.0, "vosk", 0.1), IntentMatch(None, "goodbye", 1.0, ""))
    assert global_intent.interpretation == "goodbye"
