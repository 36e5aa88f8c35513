"""The nodes scene's parts that need no lab: it runs last (it stops the demo's controller, which
is then only restarted for a scene after it), its two lines load as the story needs them (H and M
reach billing at once or stay in the menu, K is offered the callback whatever the wait), its
readings of ``ivr journeys``, and its parallel starts, which let every start finish before a
failure is raised (so each is owned by the scene's exit stack and stopped)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.flow.loader import check_paths
from ivr.flow.steps.menu import MenuStep
from ivr.flow.steps.queue import QueueStep
from lab.demo.registry import select
from lab.demo.scenes.nodes import HOLD_FLOW, HOLD_NUMBER, MENU_FLOW, MENU_NUMBER, pick, together
from lab.demo.stack import JourneyRow


def test_the_scene_runs_last() -> None:
    assert [s.name for s in select([])][-1] == "nodes"


def test_its_lines_queue_at_once_from_the_menu_and_offer_the_callback_on_the_direct_line(tmp_path: Path) -> None:
    (tmp_path / "menu.yaml").write_text(MENU_FLOW)
    (tmp_path / "hold.yaml").write_text(HOLD_FLOW)
    flows, problems = check_paths([tmp_path])
    assert problems == []
    by_name = {f.name: f for f in flows}
    menu, hold = by_name["nodes_menu"], by_name["nodes_hold"]
    assert menu.numbers == (MENU_NUMBER,) and hold.numbers == (HOLD_NUMBER,)
    menu_step = menu.steps["menu"]
    assert isinstance(menu_step, MenuStep)
    queued = menu.steps["to_billing"]
    assert isinstance(queued, QueueStep) and not queued.announce and not queued.callbacks
    direct = hold.steps["to_billing"]
    assert isinstance(direct, QueueStep) and direct.callbacks and direct.callback_after == 0
    assert queued.queue == direct.queue == "billing"


def test_pick_keeps_one_callers_rows() -> None:
    rows = [
        JourneyRow("j1", "voice", "+15551250003", "nodes_menu", "active", ["menu"]),
        JourneyRow("j2", "voice", "+15551250002", "nodes_hold", "active", ["to_billing"]),
        JourneyRow("j3", "voice", None, "nodes_menu", "active", []),
    ]
    assert [r.id for r in pick(rows, "+15551250003")] == ["j1"]
    assert pick(rows, "+15551259999") == []


async def test_together_lets_every_step_finish_before_raising_the_first_failure() -> None:
    finished: list[str] = []

    async def fails() -> None:
        raise RuntimeError("node B did not start")

    async def slow() -> str:
        await asyncio.sleep(0.05)
        finished.append("chromium")
        return "browser"

    with pytest.raises(RuntimeError, match="node B"):
        await together(fails(), slow())
    assert finished == ["chromium"]
    assert await together(slow(), asyncio.sleep(0, "x")) == ["browser", "x"]
