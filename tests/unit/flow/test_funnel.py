"""The funnel from literal log entries: each count worked out by hand from the events below."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ivr.flow.funnel import FunnelBuilder, FunnelEvent, FunnelWindow, build_funnel, render_text

E = FunnelEvent
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()

# j1: key 9 (refused), then 1 at the menu, account by key, into verify_identity (its own step
#     ask_pin shares nothing with support), back, queued at to_billing
# j2: silence, then "outage" by speech, then at outage_menu "done" by text (a chat), completed
# j3: hung up at the menu
# j4: the menu twice (a loop through the flow), option 0 by key both times, then queued
J1 = [
    E("j1", "journey_started", None, flow="support"),
    E("j1", "step_entered", "greeting"),
    E("j1", "step_entered", "main_menu"),
    E("j1", "input_rejected", "main_menu", mode="dtmf", status="match"),
    E("j1", "option_chosen", "main_menu", flow="support", option="pay_bill", mode="dtmf"),
    E("j1", "step_entered", "account"),
    E("j1", "slot_filled", "account", mode="dtmf"),
    E("j1", "step_entered", "verify"),
    E("j1", "flow_entered", "verify", flow="verify_identity", returns=True),
    E("j1", "step_entered", "ask_pin"),
    E("j1", "input_rejected", "ask_pin", mode="dtmf", status="noinput"),
    E("j1", "slot_filled", "ask_pin", mode="dtmf"),
    E("j1", "step_entered", "verified"),
    E("j1", "step_entered", "done"),
    E("j1", "flow_returned", "done", flow="support"),
    E("j1", "step_entered", "to_billing"),
    E("j1", "queued", "to_billing"),
    E("j1", "journey_queued", "to_billing"),
]
J2 = [
    E("j2", "journey_started", None, flow="support"),
    E("j2", "step_entered", "main_menu"),
    E("j2", "input_rejected", "main_menu", mode="speech", status="noinput"),
    E("j2", "option_chosen", "main_menu", flow="support", option="outage", mode="speech"),
    E("j2", "step_entered", "outage_menu"),
    E("j2", "option_chosen", "outage_menu", flow="support", option="done", mode="text"),
    E("j2", "step_entered", "goodbye"),
    E("j2", "journey_completed", "goodbye"),
]
J3 = [
    E("j3", "journey_started", None, flow="support"),
    E("j3", "step_entered", "main_menu"),
    E("j3", "journey_abandoned", "main_menu"),
]
J4 = [
    E("j4", "journey_started", None, flow="support"),
    E("j4", "step_entered", "main_menu"),
    E("j4", "option_chosen", "main_menu", flow="support", option="agent", mode="dtmf"),
    E("j4", "step_entered", "main_menu"),
    E("j4", "option_chosen", "main_menu", flow="support", option="agent", mode="dtmf"),
    E("j4", "step_entered", "to_agent"),
    E("j4", "queued", "to_agent"),
    E("j4", "journey_queued", "to_agent"),
]


def test_each_step_counts_journeys_times_options_by_mode_and_ends() -> None:
    funnel = build_funnel("support", [*J1, *J2, *J3, *J4]).to_dict(FunnelWindow(NOW - 86400, NOW, "24h"))
    steps = funnel["steps"]
    assert funnel["journeys"] == 4
    assert (funnel["from"], funnel["to"], funnel["window"]) == ("2026-12-02T12:00:00Z", "2026-12-03T12:00:00Z", "24h")
    menu = steps["main_menu"]
    assert (menu["entered"], menu["entered_times"]) == (4, 5)
    # five choices: pay_bill by key, outage by speech, agent twice by key
    assert menu["options"] == {
        "agent": {"key": 2, "speech": 0, "text": 0, "share": 2 / 4},
        "outage": {"key": 0, "speech": 1, "text": 0, "share": 1 / 4},
        "pay_bill": {"key": 1, "speech": 0, "text": 0, "share": 1 / 4},
    }
    # a refused key is a no-match, silence a no-input; of 6 inputs (4 choices, 2 refused)
    assert (menu["no_input"], menu["no_match"]) == (1, 1)
    assert menu["no_input_rate"] == menu["no_match_rate"] == 1 / 6
    assert menu["left"] == 1 and menu["completed"] == 0
    assert steps["outage_menu"]["options"] == {"done": {"key": 0, "speech": 0, "text": 1, "share": 1.0}}
    assert steps["goodbye"]["completed"] == 1
    assert (steps["to_billing"]["transferred"], steps["to_agent"]["transferred"]) == (1, 1)
    assert steps["account"]["no_input_rate"] == 0.0  # one slot filled, no rejection
    assert steps["greeting"]["no_input_rate"] is None  # asks nothing: no rate, not 0
    assert steps["greeting"]["options"] == {}


def test_a_sub_flow_s_steps_count_in_the_sub_flow_not_in_the_caller() -> None:
    support = build_funnel("support", J1).to_dict(FunnelWindow(NOW - 1, NOW, "custom"))["steps"]
    assert set(support) == {"greeting", "main_menu", "account", "verify", "to_billing"}
    sub = build_funnel("verify_identity", J1).to_dict(FunnelWindow(NOW - 1, NOW, "custom"))
    assert set(sub["steps"]) == {"ask_pin", "verified", "done"}
    assert sub["journeys"] == 1
    assert sub["steps"]["ask_pin"]["no_input"] == 1 and sub["steps"]["ask_pin"]["no_input_rate"] == 0.5


def test_a_hangup_inside_a_sub_flow_is_where_the_sub_flow_lost_the_caller() -> None:
    events = [
        *J1[:10],  # up to ask_pin, inside verify_identity
        E("j1", "journey_abandoned", "ask_pin"),
    ]
    assert build_funnel("verify_identity", events).steps["ask_pin"].left == 1
    assert "ask_pin" not in build_funnel("support", events).steps
    assert build_funnel("support", events).steps["verify"].left == 0


def test_a_journey_that_ends_in_the_continue_offer_counts_at_its_own_step() -> None:
    """The machine leaves the system flow before it logs the end, without a flow_returned."""
    events = [
        E("j5", "journey_started", None, flow="support"),
        E("j5", "step_entered", "account"),
        E("j5", "journey_resumed", "account", flow="support"),
        E("j5", "flow_entered", "account", flow="system", returns=True),
        E("j5", "step_entered", "continue_offer"),
        E("j5", "journey_abandoned", "account"),
    ]
    funnel = build_funnel("support", events)
    assert funnel.steps["account"].left == 1
    assert "continue_offer" not in funnel.steps


def test_a_flow_that_passes_the_caller_on_for_good_keeps_nothing_after() -> None:
    events = [
        E("j6", "journey_started", None, flow="support"),
        E("j6", "step_entered", "main_menu"),
        E("j6", "flow_entered", "main_menu", flow="payments", returns=False),
        E("j6", "step_entered", "main_menu"),  # payments has a main_menu too
        E("j6", "journey_abandoned", "main_menu"),
    ]
    support, payments = build_funnel("support", events), build_funnel("payments", events)
    assert (support.steps["main_menu"].times, support.steps["main_menu"].left) == (1, 0)
    assert (payments.steps["main_menu"].times, payments.steps["main_menu"].left) == (1, 1)


def test_a_step_that_no_longer_exists_keeps_its_counts_under_its_id() -> None:
    """A journey on an older version of the file ran a step the current one renamed."""
    old = [E("j7", "journey_started", None, flow="support"), E("j7", "step_entered", "old_menu")]
    new = [E("j8", "journey_started", None, flow="support"), E("j8", "step_entered", "main_menu")]
    funnel = build_funnel("support", [*old, *new])
    assert (funnel.steps["old_menu"].times, funnel.steps["main_menu"].times) == (1, 1)


def test_a_journey_resumed_on_another_channel_counts_once_per_step() -> None:
    events = [
        E("j9", "journey_started", None, flow="payments"),
        E("j9", "step_entered", "handoff"),
        E("j9", "handed_off", "handoff"),
        E("j9", "journey_handed_off", "handoff"),
        E("j9", "journey_resumed", "pay", flow="payments"),
        E("j9", "step_entered", "pay"),
        E("j9", "option_chosen", "pay", flow="payments", option="card", mode="text"),
        E("j9", "journey_completed", "pay"),
    ]
    funnel = build_funnel("payments", events).to_dict(FunnelWindow(NOW - 1, NOW, "custom"))
    assert funnel["steps"]["handoff"]["handed_off"] == 1
    assert funnel["steps"]["pay"]["options"]["card"] == {"key": 0, "speech": 0, "text": 1, "share": 1.0}
    assert funnel["journeys"] == 1


def test_text_table_names_every_step_and_option() -> None:
    text = render_text(build_funnel("support", [*J2, *J4]).to_dict(FunnelWindow(NOW - 86400, NOW, "24h")))
    assert "flow support" in text and "2 journeys" in text
    assert any(line.startswith("main_menu") and line.split()[1:3] == ["2", "3"] for line in text.splitlines())
    assert "    agent" in text and "67%" in text


def test_windows() -> None:
    assert FunnelWindow.parse(now=NOW) == FunnelWindow(NOW - 86400, NOW, "24h")
    assert FunnelWindow.parse(now=NOW, window="7d") == FunnelWindow(NOW - 7 * 86400, NOW, "7d")
    custom = FunnelWindow.parse(now=NOW, start="2026-12-01", end="2026-12-02T00:00+01:00")
    assert (custom.end - custom.start, custom.label) == (23 * 3600, "custom")


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"window": "32d"}, "at most 31 days"),
        ({"window": "745h"}, "at most 31 days"),
        ({"window": "week"}, "'window' must be like 24h or 7d"),
        ({"window": "0h"}, "longer than nothing"),
        ({"start": "2026-11-01", "end": "2026-12-03"}, "at most 31 days"),
        ({"start": "2026-12-03", "end": "2026-12-03"}, "'to' must be after 'from'"),
        ({"start": "2026-12-03"}, "go together"),
        ({"window": "24h", "start": "2026-12-03", "end": "2026-12-04"}, "not both"),
        ({"start": "yesterday", "end": "2026-12-04"}, "ISO 8601"),
    ],
)
def test_bad_windows_say_what_is_wrong(given: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        FunnelWindow.parse(now=NOW, **given)


def test_counts_grouped_elsewhere_add_up_with_replayed_journeys() -> None:
    """J2-J4 never left the flow: given as grouped counts, they make the funnel of their entries."""
    builder = FunnelBuilder("support")
    for event in J1:
        builder.add(event)
    stayed = [*J2, *J3, *J4]
    groups: dict[tuple[str, str | None, str | None, str | None, str | None], tuple[int, set[str]]] = {}
    for e in stayed:
        if e.step is not None and e.kind not in ("journey_started",):
            times, journeys = groups.get((e.kind, e.step, e.option, e.mode, e.status), (0, set()))
            groups[(e.kind, e.step, e.option, e.mode, e.status)] = (times + 1, journeys | {e.journey_id})
    for (kind, step, option, mode, status), (times, journeys) in groups.items():
        builder.add_counted(kind, step, option, mode, status, times, len(journeys))
    builder.add_journeys(3)
    window = FunnelWindow(NOW - 86400, NOW, "24h")
    assert builder.funnel.to_dict(window) == build_funnel("support", [*J1, *stayed]).to_dict(window)
