"""What the semantic matcher scores of an answer, pure text in and out: hesitations and false
starts are tidied away before the encoder (fewer word pieces, less pull towards "hmm" examples),
a second request after "and maybe" / "also" / "... later" is left for later, a story told with
"and then" is not cut."""

from __future__ import annotations

import pytest

from ivr.speech.semantic import SemanticMatcher, first_request, tidy


@pytest.mark.parametrize(
    ("said", "read"),
    [
        ("uh the the power the power is out", "the power is out"),
        ("so um I uh I wanted to sort out a payment", "so I wanted to sort out a payment"),
        ("uh yeah I'm I'm ringing about my account balance", "yeah I'm ringing about my account balance"),
        ("Um, billing.", "billing."),
        ("hmm", "hmm"),  # nothing would be left: the answer as it was
        ("mm-hmm", "mm-hmm"),  # a word of its own at a yes/no question
        ("the error message", "the error message"),  # "er" only as a whole word
        ("summer storm", "summer storm"),
    ],
)
def test_tidy_takes_out_hesitations_and_false_starts(said: str, read: str) -> None:
    assert tidy(said) == read


@pytest.mark.parametrize(
    ("said", "first", "later"),
    [
        ("mainly the outage, and maybe the bill later", "mainly the outage", "and maybe the bill later"),
        (
            "I need to pay first and then maybe talk about something else",
            "I need to pay first",
            "and then maybe talk about something else",
        ),
        ("power is out and also my bill is wrong", "power is out", "and also my bill is wrong"),
        ("the outage, and the bill later", "the outage", "and the bill later"),
        ("I heard a bang and then the power went", "I heard a bang and then the power went", ""),
        ("maybe the bill", "maybe the bill", ""),
        ("can I pay in installments", "can I pay in installments", ""),
    ],
)
def test_first_request_leaves_the_second_for_later(said: str, first: str, later: str) -> None:
    assert first_request(said) == (first, later)


def test_focus_drops_a_negated_clause_and_a_second_request() -> None:
    assert SemanticMatcher.focus("not the bill, the power is out, and maybe a refund later") == (
        "the power is out",
        ["not the bill", "and maybe a refund later"],
    )
