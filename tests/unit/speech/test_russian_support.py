# ruff: noqa: RUF001, RUF002  (Russian utterances are Cyrillic on purpose)
"""The shipped Russian support flow (dialplans/support_ru.yaml) with the product's matcher: Russian
paraphrases reach their option, Russian out-of-scope talk and small talk get none, a negated clause
("не счёт, а авария") is left out, and the flow reads back and re-asks in Russian."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flow.commands import Choice
from ivr.flow.loader import load_flow_file
from ivr.flow.machine import FlowMachine
from ivr.flow.model import Continue, Flow, InputResult, Journey, Menu, Play
from ivr.flow.steps import MenuStep
from ivr.speech.embedding import SentenceEncoder, default_encoder
from ivr.speech.semantic import SemanticMatcher, drop_negated, warm_examples
from ivr.speech.service import IntentMatchers

FLOW_FILE = Path(__file__).resolve().parents[3] / "dialplans" / "support_ru.yaml"


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow_file(FLOW_FILE)


@pytest.fixture(scope="module")
def main_menu(flow: Flow) -> SemanticMatcher:
    step = flow.steps["main_menu"]
    assert isinstance(step, MenuStep)
    choices = tuple(Choice(o.key, o.id, o.label, o.intents) for o in step.options)
    encoder: SentenceEncoder = warm_examples(default_encoder())
    matcher = IntentMatchers("ru", encoder=encoder).matcher(choices)
    assert isinstance(matcher, SemanticMatcher)
    return matcher


@pytest.mark.parametrize(
    ("text", "option"),
    [
        ("Хочу оплатить счёт за электричество", "pay_bill"),
        ("Сколько я должен по квитанции?", "pay_bill"),
        ("У меня вопрос по балансу", "pay_bill"),
        ("У нас дома пропал свет", "outage"),
        ("Нет электричества с самого утра", "outage"),
        ("Интернет не работает", "outage"),
        ("Можно поговорить с живым человеком?", "agent"),
        ("Соедините с оператором, пожалуйста", "agent"),
        ("Не счёт, а авария", "outage"),  # the negated clause is left out
        ("два", "outage"),
        ("ноль", "agent"),
    ],
)
def test_russian_paraphrases_reach_their_option(main_menu: SemanticMatcher, text: str, option: str) -> None:
    found = main_menu.match(text)
    assert found.option == option, found.reason


@pytest.mark.parametrize(
    "text",
    [
        "Алло, здравствуйте",
        "Спасибо",
        "Какая завтра погода?",
        "Где находится ваш офис?",
        "Я хочу купить новый телефон",
        "Расскажите анекдот",
        "ну",
        "",
    ],
)
def test_russian_out_of_scope_talk_gets_no_option(main_menu: SemanticMatcher, text: str) -> None:
    found = main_menu.match(text)
    assert found.option is None, found.reason


def test_russian_negation_is_dropped_only_beside_another_clause() -> None:
    assert drop_negated("не счёт, а авария") == ("авария", ["не счёт"])
    assert drop_negated("Это не про оплату, у меня нет света") == ("у меня нет света", ["Это не про оплату"])
    assert drop_negated("интернет не работает")[1] == []  # one clause: the problem itself
    assert drop_negated("нет, не работает интернет")[1] == []  # "не работает" names the problem


class Flows:
    def __init__(self, *flows: Flow) -> None:
        self.flows = {f.name: f for f in flows}

    def get(self, name: str, version: str | None = None) -> Flow:
        return self.flows[name]


def test_the_russian_flow_reads_back_and_asks_again_in_russian(flow: Flow) -> None:
    m = FlowMachine(Flows(flow), Journey.new(flow, "chat", caller="+15551230001"))
    m.start()
    m.receive(Continue())  # after the greeting
    assert m.journey.step == "main_menu"
    m.receive(InputResult("match", "speech", "свет", "outage", 0.4, intent="outage"))
    assert m.journey.confirming is not None and m.journey.confirming["option"] == "outage"
    cmds = m.receive(InputResult("match", "speech", "нет", "no", 0.9, intent="no"))
    assert isinstance(cmds[0], Play) and cmds[0].prompt.text == "Извините."
    menu = cmds[1]
    assert isinstance(menu, Menu) and [c.label.text for c in menu.choices] == [
        "оплата счета",
        "сообщить об аварии",
        "поговорить с оператором",
    ]
    m.receive(InputResult("match", "text", "1"))
    assert m.journey.step == "account"
