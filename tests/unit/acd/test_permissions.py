"""What an agent may act on (pure): their own calls and chats, open or recently ended, never another's."""

from __future__ import annotations

from ivr.acd.agents import RECENT_CONTACTS, AgentState
from ivr.acd.permissions import loggable, refusal

HOUR = 3600.0


def agent() -> AgentState:
    a = AgentState("a1", "ann", "Ann", "agent1001", {"billing": 0})
    a.login(now=0)
    a.ready(now=1)
    return a


def test_nothing_is_allowed_without_a_contact_or_a_login() -> None:
    assert refusal(None, journey_id="j1", now=10, window=HOUR) == "log in first"
    a = agent()
    assert refusal(a, journey_id="j1", now=10, window=HOUR) == "not one of your contacts"
    assert refusal(a, now=10, window=HOUR) == "no contact named"
    assert refusal(a, journey_id="", contact_id="", now=10, window=HOUR) == "no contact named"


def test_a_call_is_the_agents_once_answered_and_for_the_window_after_it_ended() -> None:
    a = agent()
    a.ringing({"uniqueid": "1.1", "journey_id": "j1"}, now=10)
    assert refusal(a, journey_id="j1", now=11, window=HOUR) == "not one of your contacts"  # not answered yet
    a.connected({"hold_time": 3}, now=12)
    assert refusal(a, journey_id="j1", now=13, window=HOUR) is None
    assert refusal(a, journey_id="j2", now=13, window=HOUR) == "not one of your contacts"
    a.completed(now=100)
    a.ready(now=101)  # Ready pressed before the notes were saved: still theirs
    assert refusal(a, journey_id="j1", now=100 + HOUR, window=HOUR) is None
    assert refusal(a, journey_id="j1", now=101 + HOUR, window=HOUR) == "this contact ended more than 60 minutes ago"
    a.logout(now=200)
    assert refusal(a, journey_id="j1", now=201, window=HOUR) == "log in first"
    a.login(now=300)
    assert refusal(a, journey_id="j1", now=301, window=HOUR) is None  # logging in again keeps the history


def test_a_call_that_ends_without_agentcomplete_ends_the_contact_too() -> None:
    a = agent()
    a.ringing({"uniqueid": "1.1", "journey_id": "j1"}, now=10)
    a.connected({}, now=12)
    a.reconcile({}, live_calls=set())  # Asterisk restarted: the call is gone
    assert a.status == "wrap_up" and a.contacts[0].ended_at is not None


def test_chats_by_contact_id_and_journey_and_sending_only_while_open() -> None:
    a = agent()
    a.take_chat("c1", "j7", now=20)
    assert refusal(a, contact_id="c1", now=21, window=HOUR, open_only=True) is None
    assert refusal(a, journey_id="j7", now=21, window=HOUR) is None
    assert refusal(a, journey_id="j7", contact_id="c2", now=21, window=HOUR) == "not one of your contacts"
    assert refusal(a, contact_id="c2", now=21, window=HOUR) == "not one of your contacts"
    a.drop_chat("c1", now=30)
    assert a.chats == set()
    assert refusal(a, contact_id="c1", now=31, window=HOUR, open_only=True) == "this contact has ended"
    assert refusal(a, journey_id="j7", now=31, window=HOUR) is None  # notes after the chat closed


def test_the_history_is_bounded_but_open_contacts_are_never_forgotten() -> None:
    a = agent()
    a.take_chat("open", "j-open", now=1)
    for i in range(3 * RECENT_CONTACTS):
        a.take_chat(f"c{i}", f"j{i}", now=10 + i)
        a.drop_chat(f"c{i}", now=11 + i)
    assert len(a.contacts) == RECENT_CONTACTS
    assert refusal(a, contact_id="open", now=100, window=HOUR, open_only=True) is None
    assert refusal(a, journey_id="j0", now=100, window=HOUR) == "not one of your contacts"  # forgotten
    assert refusal(a, journey_id=f"j{3 * RECENT_CONTACTS - 1}", now=100, window=HOUR) is None


def test_loggable_bounds_and_escapes_client_values() -> None:
    assert loggable("ann") == "'ann'"
    assert loggable("ann\nINFO forged line") == "'ann\\nINFO forged line'"
    long = loggable("x" * 1_000_000)
    assert len(long) < 80 and long.endswith("…(+999960 chars)")
    assert loggable(None) == "<NoneType>" and loggable([1] * 10**5) == "<list>"
