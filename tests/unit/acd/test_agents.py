"""Agent state transitions and the AMI actions they need (pure)."""

from __future__ import annotations

from ivr.acd.agents import AgentState, memberships


def status(state: AgentState) -> str:
    """The agent's status now (read through a call: mypy would keep an earlier comparison's narrowing)."""
    return state.status


def agent(**kw: object) -> AgentState:
    return AgentState("a1", "ann", "Ann", "agent1001", {"billing": 0, "support": 1}, **kw)  # type: ignore[arg-type]


def test_memberships_include_the_catch_all_queue() -> None:
    assert memberships({"billing": 0, "support": 1}) == [("billing", 0), ("main", 0), ("support", 1)]
    assert memberships({"main": 2}) == [("main", 2)]


def test_login_adds_every_skill_queue_paused_then_ready_unpauses() -> None:
    a = agent()
    actions = a.login(now=1)
    assert [(x["Action"], x.get("Queue"), x.get("Penalty"), x.get("Paused")) for x in actions] == [
        ("QueueAdd", "billing", "0", "true"),
        ("QueueAdd", "main", "0", "true"),
        ("QueueAdd", "support", "1", "true"),
        ("QueuePause", None, None, "true"),
    ]
    assert all(x["Interface"] == "PJSIP/agent1001" for x in actions)
    assert a.login() == []  # idempotent
    assert a.ready() == [{"Action": "QueuePause", "Interface": "PJSIP/agent1001", "Paused": "false"}]
    assert a.status == "ready"


def test_a_call_rings_connects_completes_into_wrap_up_then_ready() -> None:
    a = agent()
    a.login()
    a.ready()
    a.ringing({"uniqueid": "1.1", "journey_id": "j"})
    assert a.status == "ringing" and a.pause("x") == [] and a.ready() == []
    a.connected({"hold_time": 3})
    assert status(a) == "on_call" and a.call == {"uniqueid": "1.1", "journey_id": "j", "hold_time": 3}
    assert a.completed() == [
        {"Action": "QueuePause", "Interface": "PJSIP/agent1001", "Paused": "true", "Reason": "wrap-up"}
    ]
    assert (a.status, a.reason) == ("wrap_up", "wrap-up")
    assert a.ready()[0]["Paused"] == "false" and a.call is None


def test_no_answer_returns_to_ready_and_pause_carries_its_reason() -> None:
    a = agent()
    a.login()
    a.ready()
    a.ringing({"uniqueid": "1.1"})
    a.no_answer()
    assert a.status == "ready" and a.call is None
    assert a.pause("  lunch ")[0]["Reason"] == "lunch"
    assert a.pause("")[0]["Reason"] == "break"


def test_logout_removes_every_membership() -> None:
    a = agent()
    a.login()
    assert [(x["Action"], x["Queue"]) for x in a.logout()] == [
        ("QueueRemove", "billing"),
        ("QueueRemove", "main"),
        ("QueueRemove", "support"),
    ]
    assert a.logout() == [] and a.reconcile({}, set()) == []


def test_reconcile_after_an_asterisk_restart_re_adds_memberships_and_ends_vanished_calls() -> None:
    a = agent()
    a.login()
    a.ready()
    a.ringing({"uniqueid": "gone"})
    actions = a.reconcile({}, live_calls=set())
    assert a.status == "ready"
    assert [(x["Action"], x.get("Queue"), x["Paused"]) for x in actions] == [
        ("QueueAdd", "billing", "false"),
        ("QueueAdd", "main", "false"),
        ("QueueAdd", "support", "false"),
        ("QueuePause", None, "false"),
    ]
    on_call = agent()
    on_call.login()
    on_call.ready()
    on_call.ringing({"uniqueid": "1.1"})
    on_call.connected({})
    members = {q: {"penalty": p, "paused": False} for q, p in (("billing", 0), ("main", 0), ("support", 1))}
    assert on_call.reconcile(members, live_calls={"1.1"}) == []  # nothing to fix: call still up
    assert on_call.status == "on_call"
    fixed = on_call.reconcile({**members, "support": {"penalty": 2, "paused": False}}, live_calls=set())
    assert status(on_call) == "wrap_up"
    assert [x["Action"] for x in fixed] == ["QueuePenalty", "QueuePause"] and fixed[-1]["Paused"] == "true"


def test_blended_chats_count_apart_from_the_call() -> None:
    a = agent(max_chats=2)
    assert not a.can_take_chat()  # logged out
    a.login()
    assert not a.can_take_chat()  # paused
    a.ready()
    a.ringing({"uniqueid": "1"})
    a.connected({})
    assert a.can_take_chat()
    a.chats.update({"c1", "c2"})
    assert not a.can_take_chat()
