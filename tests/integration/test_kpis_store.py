"""KPIs from a scripted interaction log, through the real writer (contact rows kept in the same
transaction), the SQL grouping, the HTTP API and the CLI, on SQLite and PostgreSQL: every figure
equals the value worked out by hand below.

The log is what the engine, the ACD and the chat desk write (kinds and data as they record them).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from alembic import command
from sqlalchemy import make_url

from ivr.cli import main
from ivr.flow.model import Interaction
from ivr.kpis import ReportRequest
from ivr.store import schema
from ivr.store.customers import CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.kpis import KpiStore
from ivr.web.app import WebServer, create_app
from ivr.web.auth import bearer_token
from ivr.web.kpis import setup_kpis

T0 = 1_764_748_800.0  # 2025-12-03T08:00:00Z; the window is 08:00-09:00
WINDOW = ("2025-12-03T08:00Z", "2025-12-03T09:00Z")
TOKEN = "kpi-token-for-tests"

E = tuple[str, float, dict[str, Any]] | tuple[str, float, dict[str, Any], str]  # (kind, at, data[, step])


def started(at: float) -> E:
    return ("journey_started", at, {"flow": "support"})


def transfer(at: float, mode: str, outcome: str, kind: str = "agent", target: str = "bob") -> E:
    """An ``agent_transfer`` entry as ``ivr.acd.transfers`` records it."""
    data = {"transfer_id": f"x{at:g}", "mode": mode, "target_kind": kind, "target": target, "agent_id": "ag1",
            "agent": "Ann", "note": "", "outcome": outcome}  # fmt: skip
    return ("agent_transfer", at, data)


def called_out(at: float, agent: str) -> list[E]:
    """A click-to-call as ``ivr.acd.outbound`` starts it: the journey and the call at once."""
    return [("journey_started", at, {"flow": "outbound", "direction": "outbound"}),
            ("outbound_call", at, {"agent_id": agent, "agent": agent, "to_number": "+15551230005",
                                   "from_journey": None})]  # fmt: skip


# journey id -> (channel, events). Times are offsets from T0.
LOG: dict[str, tuple[str, list[E]]] = {
    # answered after 10 s by ag1, talked 120 s; personalized menu, one no-match (a wrong key) ran
    # out of its one try, then at the next menu said the first option, was read back and confirmed
    # it (queued because of the no-match)
    "j1": ("voice", [started(0), ("menu_personalized", 1, {"holdout": False}),
                     ("input_rejected", 3, {"status": "nomatch", "mode": "dtmf"}),
                     ("tries_exhausted", 3, {"tries": 1}),  # as older logs have it: no status
                     ("intent_recognised", 4, {"utterance": "my bill", "option": "pay_bill", "status": "match"}),
                     ("confirmation_asked", 4, {"option": "pay_bill", "confidence": 0.4, "below": 0.6}),
                     ("confirmation_answered", 5, {"option": "pay_bill", "confirmed": True, "mode": "speech"}),
                     ("option_chosen", 5, {"position": 1, "option": "pay_bill", "mode": "speech"}),
                     ("queued", 6, {"queue": "billing", "skill": "billing"}), ("journey_queued", 6, {}),
                     ("agent_connected", 16, {"agent_id": "ag1", "queue": "billing"}),
                     # ag1 consulted bob and cancelled, then sent the caller blind to sales
                     transfer(60, "consult", "cancelled"), transfer(130, "blind", "transferred", "queue", "sales"),
                     ("agent_completed", 136, {"agent_id": "ag1", "talk_time": 120})]),
    # holdout; silent at the speech menu, then chose the second option by key (fell back to keys);
    # left the queue after 40 s
    "j2": ("voice", [started(60), ("menu_personalized", 61, {"holdout": True}),
                     ("input_rejected", 65, {"status": "noinput", "mode": "speech"}),
                     ("option_chosen", 70, {"position": 2, "option": "outage", "mode": "dtmf"}),
                     ("queued", 71, {"queue": "billing", "skill": "billing"}), ("journey_queued", 71, {}),
                     ("queue_abandoned", 111, {"queue": "billing", "hold_time": 40})]),
    # a chat of an unknown customer (in neither group) who asked for an agent; offered to ag2 after 5 s, closed 200 s later
    "j3": ("chat", [started(120), ("menu_personalized", 121, {"holdout": None}),
                    ("option_chosen", 130, {"position": 1, "option": "support"}),
                    ("queued", 130, {"queue": "support", "skill": "support", "intent": "agent"}),
                    ("journey_queued", 130, {}),
                    ("chat_offered", 135, {"agent_id": "ag2", "skill": "support"}),
                    ("chat_closed", 335, {"by": "customer", "agent_id": "ag2"})]),
    # SMS, self-service to the end after a wrong answer (a "match" of text the menu refused) and a silence
    "j4": ("sms", [started(200), ("input_rejected", 210, {"status": "match", "mode": "text"}),
                   ("input_rejected", 220, {"status": "noinput", "mode": "text"}),
                   ("option_chosen", 230, {"position": 1, "option": "outage"}),
                   ("journey_completed", 260, {}, "goodbye")]),
    # hung up in the IVR after a phrase the speech menu could not place and a silence
    "j5": ("voice", [started(300), ("intent_recognised", 302, {"utterance": "hmm", "option": None, "status": "nomatch"}),
                     ("input_rejected", 302, {"status": "nomatch", "mode": "speech"}),
                     ("input_rejected", 305, {"status": "noinput", "mode": "speech"}),
                     ("journey_abandoned", 310, {}, "main_menu"), ("caller_left", 310, {"reason": "hangup"})]),
    # transferred out of the IVR: not contained
    "j6": ("voice", [started(400), ("transferred", 410, {"to": "+15550100"}), ("journey_completed", 410, {})]),
    # sent a link by SMS from the call; the customer opened it, claimed it in chat and finished there
    "j10": ("voice", [started(500), ("handed_off", 520, {"to": "sms", "resume": True}),
                      ("journey_handed_off", 520, {}, "offer_sms"), ("link_opened", 600, {"to": "chat"}),
                      ("channel_changed", 610, {"from": "voice", "to": "chat", "via": "link"}),
                      ("journey_resumed", 610, {"flow": "support"}), ("journey_completed", 700, {}, "goodbye")]),
    # booked a callback instead of waiting; dialled twice, reached an agent 600 s after booking
    "j11": ("voice", [started(800), ("callback_requested", 820, {"ticket": "t1", "queue": "billing"}),
                      ("journey_queued", 821, {}), ("callback_dialled", 1200, {"ticket": "t1", "attempt": 1}),
                      ("callback_dialled", 1400, {"ticket": "t1", "attempt": 2}),
                      ("callback_connected", 1420, {"ticket": "t1", "queue": "billing"})]),
    # booked a callback in support at 910, first dialled at 1500, answered at 1510: j14 joined
    # support after the booking (1005) and was answered at 1100, so this callback lost its place
    # (j11 kept its own: nobody joined billing after 820)
    "j13": ("voice", [started(900), ("callback_requested", 910, {"ticket": "t2", "queue": "support"}),
                      ("journey_queued", 911, {}), ("callback_dialled", 1500, {"ticket": "t2", "attempt": 1}),
                      ("callback_connected", 1510, {"ticket": "t2", "queue": "support"})]),
    "j14": ("voice", [started(1000), ("queued", 1005, {"queue": "support", "skill": "support"}),
                      ("journey_queued", 1005, {}), ("agent_connected", 1100, {"agent_id": "ag2"}),
                      # ag2 consulted a number, which answered: the transfer completed
                      transfer(1150, "consult", "completed", "number", "+15550199"),
                      ("agent_completed", 1160, {"agent_id": "ag2"})]),
    # c4's contact three days before j4: not in the report, but it makes j4 a repeat within 7 days
    "j12": ("voice", [started(-3 * 86400)]),
    # started before the window: not counted, although queued in it
    "j7": ("voice", [started(-100), ("queued", 10, {"queue": "billing", "skill": "billing"})]),
    # started after the window
    "j8": ("voice", [started(3700)]),
    # started in the window, silent until the menu gave up and queued it; answered after the
    # window ended (190 s wait, late events still read)
    "j9": ("voice", [started(3500), ("input_rejected", 3505, {"status": "noinput", "mode": "dtmf"}),
                     ("tries_exhausted", 3505, {"tries": 1, "status": "noinput"}), ("queued", 3510, {"queue": "support", "skill": "support"}),
                     ("journey_queued", 3510, {}), ("agent_connected", 3700, {"agent_id": "ag2"}),
                     # the caller hung up on hold while ag2 consulted: no transfer took
                     transfer(3750, "consult", "caller_hung_up")]),
    # ag1 called a customer from the desktop, who answered; ag2 called one who did not
    "j15": ("voice", [*called_out(1200, "ag1"), ("outbound_answered", 1212, {}),
                      ("agent_completed", 1300, {"agent_id": "ag1", "by": "agent"})]),
    "j16": ("voice", [*called_out(1300, "ag2"), ("outbound_failed", 1330, {"why": "no answer"}),
                      ("agent_completed", 1331, {"agent_id": "ag2", "by": "agent"})]),
}  # fmt: skip
#: Identified customers: c1 called twice in the window (j2 is a repeat within 24 h), c9 just before
#: it (j9 too), c4 three days before (j4: within 7 days); the rest are unknown callers.
CUSTOMERS = {"j1": "c1", "j2": "c1", "j4": "c4", "j12": "c4", "j7": "c9", "j9": "c9"}

TOTAL = {
    "contacts": 13,
    "offered": 5,
    "handled": 4,
    "abandoned": 1,
    "avg_abandon_s": 40.0,
    "avg_wait_s": pytest.approx((10 + 5 + 190 + 95) / 4),
    "p90_wait_s": 190.0,
    "avg_handle_s": pytest.approx((120 + 200 + 60) / 3),
    "service_level": 0.4,
    "contained": 3,
    "containment": pytest.approx(3 / 13),
    "contained_by_outcome": {"abandoned": 1, "completed": 1, "handed_off": 1},
    "choices": 4,
    "first_option_share": 0.75,
    "avg_time_to_choice_s": pytest.approx((4 + 9 + 9) / 3),
    "no_match": 3,  # j1's wrong key, j4's refused text, j5's phrase
    "no_input": 4,  # j2 and j5 at speech menus, j4 by text, j9 on keys
    "bad_input_per_contact": pytest.approx(7 / 13),
    "speech_contacts": 3,  # j1, j2, j5
    "speech_heard": 2,  # j1, j5
    "speech_recognised": 1,  # j1
    "speech_no_match": 1,  # j5
    "speech_no_input": 2,  # j2, j5
    "recognition_rate": 0.5,
    "confirmations": 1,  # j1
    "confirmed_share": 1.0,
    "speech_choices": 1,  # j1
    "fell_back_to_keys": 1,  # j2
    "fell_back_share": pytest.approx(1 / 3),
    # j1 after its no-match ran out of tries, j2 and j14 by the flow, j3 asked, j9 after silence
    "offered_by_reason": {"asked_for_agent": 1, "flow": 2, "no_input": 1, "no_match": 1},
    "left_in_flow": 1,  # j5
    "links_sent": 1,  # j10, and it went all the way
    "links_opened": 1,
    "links_claimed": 1,
    "links_completed": 1,
    "claimed_share": 1.0,
    "callbacks_booked": 2,  # j11, j13
    "callbacks_dialled": 2,
    "callback_dials": 3,
    "callbacks_answered": 2,
    "callbacks_failed": 0,
    "avg_callback_wait_s": 600.0,  # both 600 s
    "callbacks_kept": 1,  # j11; j14 overtook j13
    "callbacks_kept_share": 0.5,
    "known_contacts": 4,  # j1, j2, j4, j9
    "repeat_24h": 2,  # j2, j9
    "repeat_7d": 3,  # and j4
    "repeat_24h_share": 0.5,
    "repeat_7d_share": 0.75,
    "agent_transfers": 2,  # j1's blind one and j14's consult; not j1's cancelled one nor j9's
    "agent_transfers_blind": 1,
    "agent_transfers_consult": 1,
    "outbound_calls": 2,  # j15, j16
    "outbound_answered": 1,  # j15
    "outbound_answered_share": 0.5,
}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[JourneyStore]:
    s = JourneyStore(make_engine(database_url), batch_delay=0.0)
    await schema.upgrade(s.engine)
    await s.start()
    for journey_id, (channel, events) in LOG.items():
        s.append(
            journey_id,
            CUSTOMERS.get(journey_id),
            channel,
            [Interaction(e[0], e[3] if len(e) > 3 else None, e[2], T0 + e[1]) for e in events],
        )
    await s.flush()
    yield s
    await s.stop()


async def test_the_sql_facts_give_every_figure(store: JourneyStore) -> None:
    kpis = KpiStore(store.engine)
    contacts = {c.journey_id: c for c in await kpis.contacts(T0, T0 + 3600)}
    assert sorted(contacts) == ["j1", "j10", "j11", "j13", "j14", "j15", "j16", "j2", "j3", "j4", "j5", "j6", "j9"]
    assert (contacts["j13"].callback_queue, contacts["j13"].callback_dialled_at) == ("support", T0 + 1500)
    assert contacts["j1"].ended == "queued" and contacts["j5"].ended == "abandoned"
    assert [contacts[j].holdout for j in ("j1", "j2", "j3", "j4")] == [False, True, None, None]

    (total,) = await kpis.report(ReportRequest.parse(*WINDOW, by="interval", interval="day"))
    assert total.key == "2025-12-03T00:00:00Z"
    assert total.figures.to_dict() == TOTAL

    by_queue = {r.key: r.figures for r in await kpis.report(ReportRequest.parse(*WINDOW, by="queue"))}
    assert {q: (f.offered, f.handled, f.abandoned) for q, f in by_queue.items()} == {
        "-": (0, 0, 0),
        "billing": (2, 1, 1),
        "support": (3, 3, 0),
    }
    assert {q: f.offered_by_reason for q, f in by_queue.items()} == {
        "-": {},
        "billing": {"flow": 1, "no_match": 1},
        "support": {"asked_for_agent": 1, "flow": 1, "no_input": 1},
    }
    by_agent = {r.key: r.figures.handled for r in await kpis.report(ReportRequest.parse(*WINDOW, by="agent"))}
    assert by_agent == {"-": 0, "ag1": 1, "ag2": 3}
    # transfers count for the agent who took the call; a call out for the agent who placed it
    by_agent_rows = await kpis.report(ReportRequest.parse(*WINDOW, by="agent"))
    assert {r.key: (r.figures.agent_transfers_blind, r.figures.agent_transfers_consult) for r in by_agent_rows} == {
        "-": (0, 0),
        "ag1": (1, 0),
        "ag2": (0, 1),
    }
    assert {r.key: (r.figures.outbound_calls, r.figures.outbound_answered) for r in by_agent_rows} == {
        "-": (0, 0),
        "ag1": (1, 1),
        "ag2": (1, 0),
    }
    by_flow = {r.key: r.figures for r in await kpis.report(ReportRequest.parse(*WINDOW, by="flow"))}
    assert {k: (f.contacts, f.outbound_calls, f.agent_transfers) for k, f in by_flow.items()} == {
        "outbound": (2, 2, 0),
        "support": (11, 0, 2),
    }
    by_queue_transfers = {q: f.agent_transfers for q, f in by_queue.items()}
    assert by_queue_transfers == {"-": 0, "billing": 1, "support": 1}
    by_channel = {r.key: r.figures.contacts for r in await kpis.report(ReportRequest.parse(*WINDOW, by="channel"))}
    assert by_channel == {"chat": 1, "sms": 1, "voice": 11}
    by_pair = {r.key: r.figures for r in await kpis.report(ReportRequest.parse(*WINDOW, by="handoff"))}
    assert {k: (f.contacts, f.links_sent, f.links_completed) for k, f in by_pair.items()} == {
        "-": (12, 0, 0),
        "voice>sms": (1, 1, 1),
    }
    steps = await kpis.report(ReportRequest.parse(*WINDOW, by="step", flow="support"))
    assert [(r.key, r.figures.contacts, r.figures.left_in_flow) for r in steps] == [
        ("support/-", 8, 0),  # j1, j2, j3, j6, j9, j11, j13, j14: ended at no named step in this log
        ("support/goodbye", 1, 0),  # j4
        ("support/main_menu", 1, 1),  # j5 hung up there
        ("support/offer_sms", 1, 0),  # j10 handed off there (its first end)
    ]
    assert await kpis.report(ReportRequest.parse(*WINDOW, by="step", flow="payments")) == []
    quarters = await kpis.report(ReportRequest.parse(*WINDOW, by="interval", interval="15min"))
    assert [(r.key[11:16], r.figures.contacts) for r in quarters] == [("08:00", 8), ("08:15", 4), ("08:45", 1)]
    # a callback's place is judged per queue: j13 lost it to j14 in support; j11 kept it in billing
    assert {q: (f.callbacks_dialled, f.callbacks_kept) for q, f in by_queue.items()} == {
        "-": (2, 1),  # callbacks are not offered contacts: no queue of their own in this log
        "billing": (0, 0),
        "support": (0, 0),
    }


async def test_the_holdout_split_shows_in_the_report(store: JourneyStore) -> None:
    rows = await KpiStore(store.engine).report(ReportRequest.parse(*WINDOW, by="flow", split_holdout=True))
    split = {r.holdout: r.figures for r in rows}
    assert set(split) == {"-", "holdout", "personalized"}
    assert (split["personalized"].first_option_share, split["personalized"].avg_time_to_choice_s) == (1.0, 4.0)
    assert (split["holdout"].first_option_share, split["holdout"].avg_time_to_choice_s) == (0.0, 9.0)
    assert (split["personalized"].no_match, split["holdout"].no_match) == (1, 0)
    assert (split["personalized"].containment, split["holdout"].containment) == (0.0, 0.0)


@pytest.fixture
async def api(store: JourneyStore) -> AsyncIterator[str]:
    app = create_app(CustomerStore(store.engine), bearer_token(TOKEN))
    setup_kpis(app, KpiStore(store.engine), service_level_s=20.0, max_window_s=31 * 86400.0)
    server = WebServer(app, host="127.0.0.1", port=0)
    await server.start()
    yield f"http://127.0.0.1:{server.port}/api/kpis"
    await server.stop()


async def test_the_api_gives_the_same_numbers_and_refuses_bad_requests(api: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        query = {"from": WINDOW[0], "to": WINDOW[1], "by": "interval", "interval": "day"}
        async with http.get(api, params=query, headers=auth) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        assert (body["from"], body["to"], body["by"], body["service_level_s"]) == (
            "2025-12-03T08:00:00Z",
            "2025-12-03T09:00:00Z",
            "interval",
            20.0,
        )
        (row,) = body["rows"]
        assert row == {"interval": "2025-12-03T00:00:00Z", **TOTAL}

        async with http.get(api, params={**query, "by": "flow", "holdout": "1"}, headers=auth) as r:
            assert [(x["flow"], x["holdout"]) for x in (await r.json())["rows"]] == [
                ("outbound", "-"),
                ("support", "-"),
                ("support", "holdout"),
                ("support", "personalized"),
            ]
        async with http.get(api, params={**query, "by": "step", "flow": "support"}, headers=auth) as r:
            left = {x["step"]: x["left_in_flow"] for x in (await r.json())["rows"]}
            assert left == {"support/-": 0, "support/goodbye": 0, "support/main_menu": 1, "support/offer_sms": 0}

        async with http.get(api, params=query) as r:
            assert r.status == 401
        bad = [
            ({"from": WINDOW[0]}, "'from' and 'to' are required"),
            ({**query, "to": "2026-03-01"}, "at most 31 days"),
            ({**query, "by": "planet"}, "'by' must be one of"),
            ({**query, "interval": "week"}, "'interval' must be one of"),
            ({**query, "from": "yesterday"}, "ISO 8601"),
            ({**query, "holdout": "maybe"}, "'holdout' must be 1 or 0"),
            ({**query, "limit": "5"}, "unknown parameter"),
            ({**query, "to": WINDOW[0]}, "after"),
        ]
        for params, message in bad:
            async with http.get(api, params=params, headers=auth) as r:
                assert r.status == 400, params
                assert message in (await r.json())["error"], params


async def test_the_cli_prints_the_same_numbers(
    store: JourneyStore, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IVR_DATABASE_URL", database_url)
    monkeypatch.delenv("IVR_CONFIG", raising=False)
    common = ["report", "--from", WINDOW[0], "--to", WINDOW[1]]
    assert await _cli([*common, "--by", "interval", "--interval", "day", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row == {"interval": "2025-12-03T00:00:00Z", **TOTAL}

    assert await _cli([*common, "--by", "queue"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("queue,contacts,offered,handled,abandoned,")
    assert [line.split(",")[:5] for line in lines[1:]] == [
        ["-", "8", "0", "0", "0"],
        ["billing", "2", "2", "1", "1"],
        ["support", "3", "3", "3", "0"],
    ]

    assert await _cli(["report", "--from", "2025-01-01", "--to", "2025-06-01"]) == 2
    assert "at most 31 days" in capsys.readouterr().err
    assert await _cli([*common, "--by", "step", "--flow", "support"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("step,contacts,") and [line.split(",")[0] for line in lines[1:]] == [
        "support/-",
        "support/goodbye",
        "support/main_menu",
        "support/offer_sms",
    ]
    assert await _cli([*common, "--by", "planet"]) == 2
    assert "'by' must be one of" in capsys.readouterr().err


async def _cli(argv: list[str]) -> int:
    """``ivr`` runs its own event loop: run it in a thread, off the test's loop."""
    return await asyncio.to_thread(main, argv)


async def test_the_migration_folds_an_older_log_into_the_same_contacts(store: JourneyStore) -> None:
    """A log written before contact_facts existed: the upgrade's backfill gives the rows the writer gives."""
    kpis = KpiStore(store.engine)
    written = sorted(await kpis.contacts(T0 - 86400, T0 + 86400), key=lambda c: c.journey_id)
    assert len(written) == 15
    async with store.engine.begin() as conn:
        await conn.run_sync(lambda c: _alembic(c, "downgrade", "0005"))
    await schema.upgrade(store.engine)
    assert sorted(await kpis.contacts(T0 - 86400, T0 + 86400), key=lambda c: c.journey_id) == written


def _alembic(conn: Any, verb: str, revision: str) -> None:
    cfg = schema.alembic_config()
    cfg.attributes["connection"] = conn
    getattr(command, verb)(cfg, revision)


async def test_the_api_answers_503_when_the_database_cannot_be_read(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that is down or gone: a 503 that says so, the cause in the log, never a 500."""
    if database_url.startswith("sqlite"):
        dead = f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'ivr.sqlite3'}"  # no such folder
    else:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        dead = str(make_url(database_url).set(host="127.0.0.1", port=port))
    engine = make_engine(dead)
    app = create_app(CustomerStore(engine), bearer_token(TOKEN))
    setup_kpis(app, KpiStore(engine), service_level_s=20.0, max_window_s=31 * 86400.0)
    server = WebServer(app, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            query = {"from": WINDOW[0], "to": WINDOW[1], "by": "queue"}
            url = f"http://127.0.0.1:{server.port}/api/kpis"
            async with http.get(url, params=query, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 503, await r.text()
                assert "database is not answering" in (await r.json())["error"]
    finally:
        await server.stop()
        await engine.dispose()
    assert any("the database cannot be read" in r.getMessage() for r in caplog.records)
