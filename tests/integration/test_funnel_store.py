"""A flow's funnel from a scripted interaction log, through the real writer, the SQL selection, the
HTTP API and the CLI, on SQLite and PostgreSQL: every count equals the one worked out by hand.

The log is what the engine writes (kinds and data as ``FlowMachine`` and the steps record them).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ivr.cli import main
from ivr.flow.funnel import FunnelWindow
from ivr.flow.model import Interaction
from ivr.store import schema
from ivr.store.customers import CustomerStore
from ivr.store.funnels import FunnelStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.web.app import WebServer, create_app
from ivr.web.auth import bearer_token
from ivr.web.funnel import setup_funnel

NOW = time.time()
T0 = NOW - 3600  # every journey below starts in the last hour, unless it says
TOKEN = "funnel-token-for-tests"

E = tuple[str, str | None, dict[str, Any]]  # (kind, step, data)


def chosen(step: str, option: str, mode: str, flow: str = "support") -> E:
    return ("option_chosen", step, {"flow": flow, "option": option, "mode": mode, "key": "1", "position": 1})


def entered(step: str, kind: str = "menu") -> E:
    return ("step_entered", step, {"kind": kind})


LOG: dict[str, tuple[str, float, list[E]]] = {
    # a wrong key, then 1; account; the PIN sub-flow (one silence); queued for billing
    "j1": ("voice", 0, [("journey_started", None, {"flow": "support"}), entered("main_menu"),
                        ("input_rejected", "main_menu", {"status": "match", "mode": "dtmf", "attempt": 1}),
                        chosen("main_menu", "pay_bill", "dtmf"), entered("account", "ask"),
                        ("slot_filled", "account", {"slot": "account_number", "mode": "dtmf", "length": 8}),
                        entered("verify", "invoke"), ("flow_entered", "verify", {"flow": "verify_identity", "returns": True}),
                        entered("ask_pin", "ask"), ("input_rejected", "ask_pin", {"status": "noinput", "mode": "dtmf", "attempt": 1}),
                        ("slot_filled", "ask_pin", {"slot": "pin", "mode": "dtmf", "length": 4}),
                        entered("verified", "say"), entered("done", "return"), ("flow_returned", "done", {"flow": "support"}),
                        entered("to_billing", "queue"), ("queued", "to_billing", {"queue": "billing", "skill": "billing"}),
                        ("journey_queued", "to_billing", {})]),
    # silence, then "outage" by speech; at outage_menu "done" by key; completed at goodbye
    "j2": ("voice", 60, [("journey_started", None, {"flow": "support"}), entered("main_menu"),
                         ("input_rejected", "main_menu", {"status": "noinput", "mode": "speech", "attempt": 1}),
                         chosen("main_menu", "outage", "speech"), entered("outage_info", "say"), entered("outage_menu"),
                         chosen("outage_menu", "done", "dtmf"), entered("goodbye", "hangup"),
                         ("journey_completed", "goodbye", {})]),
    # a chat: typed the agent option, queued
    "j3": ("chat", 120, [("journey_started", None, {"flow": "support"}), entered("main_menu"),
                         chosen("main_menu", "agent", "text"), entered("to_agent", "queue"),
                         ("queued", "to_agent", {"queue": "main", "skill": None}), ("journey_queued", "to_agent", {})]),
    # hung up during the menu
    "j4": ("voice", 180, [("journey_started", None, {"flow": "support"}), entered("main_menu"),
                          ("journey_abandoned", "main_menu", {}), ("caller_left", "main_menu", {"reason": "hangup"})]),
    # an older version of the file: a step the current one no longer has
    "j5": ("voice", 240, [("journey_started", None, {"flow": "support"}), entered("old_menu"),
                          ("journey_abandoned", "old_menu", {})]),
    # another flow that invokes the PIN sub-flow: in verify_identity's funnel, not in support's
    "j6": ("voice", 300, [("journey_started", None, {"flow": "payments"}), entered("main_menu"),
                          chosen("main_menu", "pay", "dtmf", flow="payments"), entered("verify", "invoke"),
                          ("flow_entered", "verify", {"flow": "verify_identity", "returns": True}),
                          entered("ask_pin", "ask"), ("journey_abandoned", "ask_pin", {})]),
    # started two days ago: outside the 24 h window
    "j7": ("voice", -2 * 86400, [("journey_started", None, {"flow": "support"}), entered("main_menu"),
                                 ("journey_abandoned", "main_menu", {})]),
}  # fmt: skip

EXPECTED_MENU = {
    "entered": 4,
    "entered_times": 4,
    "options": {
        "agent": {"key": 0, "speech": 0, "text": 1, "share": 1 / 3},
        "outage": {"key": 0, "speech": 1, "text": 0, "share": 1 / 3},
        "pay_bill": {"key": 1, "speech": 0, "text": 0, "share": 1 / 3},
    },
    "no_input": 1,
    "no_match": 1,
    "no_input_rate": 0.2,  # of 5 inputs: 3 choices, 2 refused
    "no_match_rate": 0.2,
    "left": 1,
    "completed": 0,
    "failed": 0,
    "handed_off": 0,
    "transferred": 0,
}
SUPPORT_STEPS = [
    "account",
    "goodbye",
    "main_menu",
    "old_menu",
    "outage_info",
    "outage_menu",
    "to_agent",
    "to_billing",
    "verify",
]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JourneyStore]:
    s = JourneyStore(make_engine(database_url), batch_delay=0.0)
    await schema.upgrade(s.engine)
    await s.start()
    for journey_id, (channel, offset, events) in LOG.items():
        at = T0 + offset
        s.append(journey_id, None, channel, [Interaction(k, step, d, at + n) for n, (k, step, d) in enumerate(events)])
    await s.flush()
    yield s
    await s.stop()


async def test_the_sql_selection_gives_every_count(store: JourneyStore) -> None:
    funnels = FunnelStore(store.engine)
    day = FunnelWindow.parse(now=time.time())
    support = (await funnels.funnel("support", day)).to_dict(day)
    assert support["journeys"] == 5  # j1-j5; j6 is another flow's, j7 started before the window
    assert sorted(support["steps"]) == SUPPORT_STEPS
    assert support["steps"]["main_menu"] == EXPECTED_MENU
    assert support["steps"]["old_menu"]["left"] == 1
    assert (support["steps"]["to_billing"]["transferred"], support["steps"]["to_agent"]["transferred"]) == (1, 1)
    assert support["steps"]["goodbye"]["completed"] == 1
    assert support["steps"]["outage_menu"]["options"] == {"done": {"key": 1, "speech": 0, "text": 0, "share": 1.0}}

    pin = (await funnels.funnel("verify_identity", day)).to_dict(day)
    assert pin["journeys"] == 2  # j1 from support, j6 from payments
    assert (pin["steps"]["ask_pin"]["entered"], pin["steps"]["ask_pin"]["left"]) == (2, 1)
    assert pin["steps"]["ask_pin"]["no_input_rate"] == 0.5

    # the grouped path (journeys that stayed in their flow) counts what the replay of every entry counts
    for name in ("support", "verify_identity", "payments"):
        assert (await funnels.funnel(name, day)).to_dict(day) == (await funnels.replayed(name, day)).to_dict(day)

    week = FunnelWindow.parse(now=time.time(), window="7d")
    assert (await funnels.funnel("support", week)).to_dict(week)["steps"]["main_menu"]["entered"] == 5


@pytest.fixture
async def api(store: JourneyStore) -> AsyncIterator[str]:
    app = create_app(CustomerStore(store.engine), bearer_token(TOKEN))
    setup_funnel(app, FunnelStore(store.engine), max_window_s=31 * 86400.0)
    server = WebServer(app, host="127.0.0.1", port=0)
    await server.start()
    yield f"http://127.0.0.1:{server.port}/api/funnel"
    await server.stop()


async def test_the_api_gives_the_same_counts_and_refuses_bad_requests(api: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.get(api, params={"flow": "support", "window": "24h"}, headers=auth) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        assert (body["flow"], body["window"], body["journeys"]) == ("support", "24h", 5)
        assert body["steps"]["main_menu"] == EXPECTED_MENU
        assert sorted(body["steps"]) == SUPPORT_STEPS

        async with http.get(api, params={"flow": "nobody"}, headers=auth) as r:
            assert r.status == 200 and (await r.json())["steps"] == {}
        async with http.get(api, params={"flow": "support"}) as r:
            assert r.status == 401
        bad = [
            ({}, "'flow' must be"),
            ({"flow": "x" * 65}, "'flow' must be"),
            ({"flow": "support", "window": "32d"}, "at most 31 days"),
            ({"flow": "support", "window": "forever"}, "'window' must be like 24h or 7d"),
            ({"flow": "support", "from": "2026-01-01", "to": "2026-03-01"}, "at most 31 days"),
            ({"flow": "support", "from": "yesterday", "to": "2026-03-01"}, "ISO 8601"),
            ({"flow": "support", "from": "2026-01-01"}, "go together"),
            ({"flow": "support", "limit": "5"}, "unknown parameter"),
        ]
        for params, message in bad:
            async with http.get(api, params=params, headers=auth) as r:
                assert r.status == 400, params
                assert message in (await r.json())["error"], params


async def test_the_cli_prints_the_same_counts(
    store: JourneyStore, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IVR_DATABASE_URL", database_url)
    monkeypatch.delenv("IVR_CONFIG", raising=False)
    assert await _cli(["funnel", "support", "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["steps"]["main_menu"] == EXPECTED_MENU and body["window"] == "24h"

    assert await _cli(["funnel", "support", "--window", "7d"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(7d, 6 journeys)" in lines[0]
    assert [line.split()[:2] for line in lines if line.startswith("main_menu")] == [["main_menu", "5"]]

    assert await _cli(["funnel", "support", "--window", "40d"]) == 2
    assert "at most 31 days" in capsys.readouterr().err


async def _cli(argv: list[str]) -> int:
    """``ivr`` runs its own event loop: run it in a thread, off the test's loop."""
    return await asyncio.to_thread(main, argv)
