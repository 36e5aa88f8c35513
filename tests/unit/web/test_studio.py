"""The flow studio on a real aiohttp application (the product's, with its body limit and
middlewares), a real SQLite store and a real flows directory: an admin's login, the list with
versions and last change, check, publish (refused on a problem, 409 over a newer version),
rollback, the audit log, the file edited on disk, and bad input that is a clear 4xx, never a 500."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from ivr.acd.service import Acd
from ivr.bus.pubsub import MemoryBus
from ivr.flow.library import FlowLibrary
from ivr.flow.model import Interaction
from ivr.flow.simulate import Transcript, simulate
from ivr.store.customers import CustomerStore
from ivr.store.flow_versions import FlowVersionStore
from ivr.store.funnels import FunnelStore
from ivr.store.journeys import JourneyStore
from ivr.web.agents_auth import hash_password
from ivr.web.app import create_app
from ivr.web.auth import bearer_token
from ivr.web.desktop import setup_desktop
from ivr.web.studio import FlowLookup, Studio, setup_studio
from ivr.web.supervisor import setup_supervisor
from tests.unit.web.desk_parts import stores_with_two_agents

SALES = """\
flow: sales
start: hello
numbers: ["5550111"]
steps:
  hello:
    say: Welcome to sales.
    next: menu
  menu:
    menu:
      prompt: Press 1 for offers.
      options:
        offers: {dtmf: "1", say: offers, next: bye}
  bye:
    hangup: {}
"""
BROKEN = SALES.replace("next: bye", "next: nowhere")  # line 12
NEWER = SALES.replace("Welcome to sales.", "Welcome to sales, new and improved.")


class Site:
    def __init__(
        self, base: str, flows: Path, library: FlowLibrary, versions: FlowVersionStore, journeys: JourneyStore
    ) -> None:
        self.journeys = journeys
        self.base = base
        self.flows = flows
        self.library = library
        self.versions = versions

    async def login(self, where: str, username: str, password: str) -> tuple[aiohttp.ClientSession, str]:
        client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        page = await (await client.get(f"{self.base}/{where}/login")).text()
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match
        reply = await client.post(
            f"{self.base}/{where}/login",
            data={"username": username, "password": password, "csrf": match.group(1)},
            allow_redirects=False,
        )
        assert reply.status == 303
        if reply.headers["Location"] != f"/{where}/":
            await client.close()
            raise PermissionError(reply.headers["Location"])
        me = await (await client.get(f"{self.base}/{where}/api/me")).json()
        return client, str(me["csrf"])


async def call(
    client: aiohttp.ClientSession, method: str, url: str, csrf: str, body: Any = None, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    headers = {"X-CSRF-Token": csrf, **kwargs.pop("headers", {})}
    async with client.request(method, url, json=body, headers=headers, **kwargs) as reply:
        data = await reply.json(content_type=None) if reply.content_type == "application/json" else {}
        return reply.status, data


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    journeys, agents = await stores_with_two_agents(tmp_path / "db.sqlite3")
    for name, role in (("sue", "supervisor"), ("ada", "admin")):
        await agents.add(
            username=name,
            display_name=name.title(),
            password_hash=hash_password(f"{name}-password"),
            endpoint="",
            skills={},
            agent_id=name,
            role=role,
        )
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "sales.yaml").write_text(SALES)
    library = FlowLibrary(flows)
    library.reload()
    bus = MemoryBus()
    customers = CustomerStore(journeys.engine)
    acd = Acd(ami=None, journeys=journeys, customers=customers, bus=bus)
    app = create_app(customers, bearer_token("api-token"))
    setup_desktop(app, acd=acd, agents=agents, bus=bus, session_check=0.1)
    setup_supervisor(app)

    async def run(flows: FlowLookup, flow: str, caller: str | None, channel: str, inputs: Sequence[str]) -> Transcript:
        return simulate(flows, flow, caller=caller, channel=channel, inputs=inputs)

    versions = FlowVersionStore(journeys.engine)
    setup_studio(
        app,
        Studio(
            directory=flows,
            versions=versions,
            reload=library.reload,
            live=library.get,
            simulate=run,
            funnels=FunnelStore(journeys.engine),
        ),
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield Site(str(server.make_url("")).rstrip("/"), flows, library, versions, journeys)
    await server.close()
    await acd.stop()
    await journeys.stop()


async def status_of(site: Site, path: str, client: aiohttp.ClientSession | None = None) -> int:
    if client is None:
        async with aiohttp.ClientSession() as anon, anon.get(site.base + path, allow_redirects=False) as reply:
            return reply.status
    async with client.get(site.base + path, allow_redirects=False) as reply:
        return reply.status


async def test_only_an_admin_opens_the_studio(site: Site) -> None:
    assert await status_of(site, "/studio/") == 303
    assert await status_of(site, "/studio/api/flows") == 401
    for user, where in (("ann", "desktop"), ("sue", "supervisor")):
        with pytest.raises(PermissionError, match="error=role"):
            await site.login("studio", user, f"{user}-password")
        client, _ = await site.login(where, user, f"{user}-password")
        async with client:
            token = next(c.value for c in client.cookie_jar if c.key in ("ivr_session", "ivr_supervisor"))
            client.cookie_jar.update_cookies({"ivr_studio": token})  # their session under the studio's name
            assert await status_of(site, "/studio/api/flows", client) == 403
            assert await status_of(site, "/studio/", client) == 403
    client, _ = await site.login("studio", "ada", "ada-password")
    async with client:
        cookie = next(c for c in client.cookie_jar if c.key == "ivr_studio")
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/studio"
        assert await status_of(site, "/studio/", client) == 200
        assert await status_of(site, "/desktop/api/me", client) == 401
        assert await status_of(site, "/supervisor/api/me", client) == 401


async def test_the_list_the_flow_its_diagram_and_a_check_at_its_line(site: Site) -> None:
    client, csrf = await site.login("studio", "ada", "ada-password")
    async with client:
        status, listed = await call(client, "GET", f"{site.base}/studio/api/flows", csrf)
        assert status == 200
        assert [(f["name"], f["number"], f["source"], f["author"]) for f in listed["flows"]] == [
            ("sales", 1, "disk", "(on disk)")
        ]
        status, flow = await call(client, "GET", f"{site.base}/studio/api/flows/sales", csrf)
        assert flow["text"] == SALES and flow["problems"] == []
        assert flow["version"] == site.library.current("sales").version
        for step, line in (("hello", 5), ("menu", 8), ("bye", 13)):
            assert f'data-step="{step}" data-line="{line}"' in flow["svg"]
        status, checked = await call(
            client, "POST", f"{site.base}/studio/api/check", csrf, {"name": "sales", "text": BROKEN}
        )
        assert status == 200 and checked["svg"] is None  # the page keeps the last diagram, greyed
        assert [p["text"] for p in checked["problems"]] == ["sales.yaml:12: menu: next step 'nowhere' does not exist"]
        extra = SALES.replace("next: bye", "next: extra") + "  extra:\n    say: One more thing.\n    next: bye\n"
        status, checked = await call(
            client, "POST", f"{site.base}/studio/api/check", csrf, {"name": "sales", "text": extra}
        )
        assert checked["problems"] == [] and 'data-step="extra" data-line="15"' in checked["svg"]
        status, _ = await call(client, "POST", f"{site.base}/studio/api/check", "wrong", {"name": "sales", "text": ""})
        assert status == 403
        status, _ = await call(
            client,
            "POST",
            f"{site.base}/studio/api/check",
            csrf,
            {"name": "sales", "text": ""},
            headers={"Origin": "http://evil.example"},
        )
        assert status == 403


async def test_publish_refuses_a_problem_then_publishes_reloads_and_rolls_back(site: Site) -> None:
    client, csrf = await site.login("studio", "ada", "ada-password")
    url = f"{site.base}/studio/api/flows/sales"
    async with client:
        _, flow = await call(client, "GET", url, csrf)
        v1 = flow["version"]
        status, refused = await call(client, "POST", f"{url}/publish", csrf, {"text": BROKEN, "base": v1})
        assert status == 422 and refused["problems"][0]["line"] == 12
        assert (site.flows / "sales.yaml").read_text() == SALES

        status, published = await call(client, "POST", f"{url}/publish", csrf, {"text": NEWER, "base": v1})
        assert status == 200 and published["number"] == 2 and published["author"] == "ada"
        assert (site.flows / "sales.yaml").read_text() == NEWER
        assert site.library.current("sales").version == published["version"] != v1  # the next call takes it
        assert sorted(p.name for p in site.flows.iterdir()) == ["sales.yaml"]
        _, two = await call(client, "GET", f"{url}/versions/2", csrf)
        assert "-    say: Welcome to sales.\n+    say: Welcome to sales, new and improved.\n" in two["diff"]

        status, back = await call(client, "POST", f"{url}/rollback", csrf, {"number": 1, "base": published["version"]})
        assert status == 200 and back["number"] == 3 and back["version"] == v1
        assert (site.flows / "sales.yaml").read_text() == SALES
        assert site.library.current("sales").version == v1
        _, flow = await call(client, "GET", url, csrf)
        assert [(h["number"], h["author"], h["source"]) for h in flow["history"]] == [
            (3, "ada", "studio"),
            (2, "ada", "studio"),
            (1, "(on disk)", "disk"),
        ]
        assert [(a["actor"], a["action"], a["number"], a["detail"]) for a in flow["audit"]] == [
            ("ada", "rollback", 3, "to version 1"),
            ("ada", "publish", 2, ""),
        ]


async def test_two_publishes_from_one_base_the_second_is_a_conflict(site: Site) -> None:
    client, csrf = await site.login("studio", "ada", "ada-password")
    url = f"{site.base}/studio/api/flows/sales"
    async with client:
        _, flow = await call(client, "GET", url, csrf)
        other = SALES.replace("Press 1 for offers.", "Press 1 for this week's offers.")
        first, second = await asyncio.gather(
            call(client, "POST", f"{url}/publish", csrf, {"text": NEWER, "base": flow["version"]}),
            call(client, "POST", f"{url}/publish", csrf, {"text": other, "base": flow["version"]}),
        )
        assert sorted([first[0], second[0]]) == [200, 409]
        won, lost = (first, second) if first[0] == 200 else (second, first)
        kept = NEWER if won is first else other
        assert (site.flows / "sales.yaml").read_text() == kept  # nothing overwritten
        assert lost[1]["current"]["text"] == kept and lost[1]["current"]["number"] == 2
        assert lost[1]["yours"]["text"] in (NEWER, other) and lost[1]["yours"]["text"] != kept
        assert len(await site.versions.history("sales")) == 2


async def test_an_edit_on_disk_is_a_new_version_and_a_publish_over_it_a_conflict(site: Site) -> None:
    client, csrf = await site.login("studio", "ada", "ada-password")
    url = f"{site.base}/studio/api/flows/sales"
    async with client:
        _, flow = await call(client, "GET", url, csrf)
        (site.flows / "sales.yaml").write_text(NEWER)  # git pull, or an editor
        status, refused = await call(
            client, "POST", f"{url}/publish", csrf, {"text": BROKEN.replace("nowhere", "bye"), "base": flow["version"]}
        )
        assert status == 409 and refused["current"]["text"] == NEWER
        assert (site.flows / "sales.yaml").read_text() == NEWER
        _, listed = await call(client, "GET", f"{site.base}/studio/api/flows", csrf)
        assert [(f["number"], f["source"]) for f in listed["flows"]] == [(2, "disk")]


@pytest.mark.parametrize(
    "path",
    [
        "/studio/api/flows/..%2F..%2Fetc%2Fpasswd",
        "/studio/api/flows/%2E%2E",
        "/studio/api/flows/.sales",
        "/studio/api/flows/Sales",
        "/studio/api/flows/sales%00",
        "/studio/api/flows/sales.yaml",
    ],
)
async def test_a_path_in_a_flow_name_is_refused(site: Site, path: str) -> None:
    client, csrf = await site.login("studio", "ada", "ada-password")
    async with client:
        assert await status_of(site, path, client) in (400, 404)
        status, _ = await call(client, "POST", site.base + path + "/publish", csrf, {"text": SALES, "base": ""})
        assert status in (400, 404)
        for name in ("../sales", "../../tmp/x", "/tmp/x", "a/b", ".x"):
            status, body = await call(
                client, "POST", f"{site.base}/studio/api/check", csrf, {"name": name, "text": SALES}
            )
            assert status == 400 and "flow name" in body["error"]
    assert sorted(p.name for p in site.flows.iterdir()) == ["sales.yaml"]
    assert not (site.flows.parent / "x.yaml").exists()


async def test_bad_bodies_are_clear_4xx_and_the_flow_keeps_serving(site: Site) -> None:
    client, csrf = await site.login("studio", "ada", "ada-password")
    url = f"{site.base}/studio/api/flows/sales"
    async with client:
        _, flow = await call(client, "GET", url, csrf)
        huge = b'{"text": "' + b"x" * 10_000_000 + b'", "base": ""}'
        async with client.post(
            f"{url}/publish", data=huge, headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"}
        ) as reply:
            assert reply.status == 413
        for raw in (b"not json", b"[1, 2]", b'{"text": 5, "base": ""}', b'{"number": "1", "base": ""}'):
            async with client.post(f"{url}/publish", data=raw, headers={"X-CSRF-Token": csrf}) as reply:
                assert reply.status == 400, raw
        status, _ = await call(client, "POST", f"{url}/rollback", csrf, {"number": 99, "base": flow["version"]})
        assert status == 404
        anchors = ["&a [x, x, x, x, x, x, x, x, x]"] + [
            f"&{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)
        ]
        bomb = "flow: sales\nstart: s\ndescription: [" + ", ".join(anchors) + "]\nsteps:\n  s: {say: Hi.}\n"
        status, checked = await call(
            client, "POST", f"{site.base}/studio/api/check", csrf, {"name": "sales", "text": bomb}
        )
        assert status == 200 and "expand to more than" in checked["problems"][0]["message"]
        status, _ = await call(client, "POST", f"{url}/publish", csrf, {"text": bomb, "base": flow["version"]})
        assert status == 422
        status, big = await call(
            client, "POST", f"{url}/publish", csrf, {"text": SALES + "#" + "x" * 300_000, "base": flow["version"]}
        )
        assert status == 422 and "file too big" in big["problems"][0]["message"]
    assert (site.flows / "sales.yaml").read_text() == SALES
    assert site.library.current("sales").version == flow["version"]


async def test_the_simulator_runs_the_edited_text(site: Site) -> None:
    client, csrf = await site.login("studio", "ada", "ada-password")
    async with client:
        body = {"name": "sales", "text": NEWER, "caller": "+15551230001", "channel": "voice", "inputs": ["1"]}
        status, run = await call(client, "POST", f"{site.base}/studio/api/simulate", csrf, body)
        assert status == 200
        assert "[hello] Welcome to sales, new and improved." in run["lines"]
        assert run["path"] == ["hello", "menu", "bye"]
        status, refused = await call(client, "POST", f"{site.base}/studio/api/simulate", csrf, {**body, "text": BROKEN})
        assert status == 422 and refused["problems"][0]["line"] == 12
        status, _ = await call(client, "POST", f"{site.base}/studio/api/simulate", csrf, {**body, "channel": "fax"})
        assert status == 400


async def test_the_diagram_s_funnel_counts_real_journeys_by_step(site: Site) -> None:
    """Two journeys through the journey writer (one chose offers by key, one hung up in the menu):
    the studio's funnel route keys them by the same step ids as the diagram's nodes; only 24 h and
    7 d are offered, and only an admin reads it."""
    now = time.time()
    for journey_id, events in (
        ("f1", [("journey_started", None, {"flow": "sales"}), ("step_entered", "menu", {"kind": "menu"}),
                ("option_chosen", "menu", {"flow": "sales", "option": "offers", "mode": "dtmf", "key": "1"}),
                ("step_entered", "bye", {"kind": "hangup"}), ("journey_completed", "bye", {})]),
        ("f2", [("journey_started", None, {"flow": "sales"}), ("step_entered", "menu", {"kind": "menu"}),
                ("journey_abandoned", "menu", {})]),
    ):  # fmt: skip
        interactions = [Interaction(k, step, d, now - 60 + n) for n, (k, step, d) in enumerate(events)]
        site.journeys.append(journey_id, None, "voice", interactions)
    await site.journeys.flush()
    assert await status_of(site, "/studio/api/flows/sales/funnel") == 401
    client, csrf = await site.login("studio", "ada", "ada-password")
    async with client:
        status, funnel = await call(client, "GET", f"{site.base}/studio/api/flows/sales/funnel?window=7d", csrf)
        assert status == 200 and funnel["window"] == "7d" and funnel["journeys"] == 2
        menu = funnel["steps"]["menu"]
        assert (menu["entered"], menu["left"]) == (2, 1)
        assert menu["options"] == {"offers": {"key": 1, "speech": 0, "text": 0, "share": 1.0}}
        assert funnel["steps"]["bye"]["completed"] == 1
        status, flow = await call(client, "GET", f"{site.base}/studio/api/flows/sales", csrf)
        assert all(f'data-step="{step}"' in flow["svg"] for step in funnel["steps"])
        for bad in ("?window=31d", "?window=x", ""):
            status, _ = await call(client, "GET", f"{site.base}/studio/api/flows/../funnel{bad}", csrf)
            assert status in (400, 404)
        status, problem = await call(client, "GET", f"{site.base}/studio/api/flows/sales/funnel?window=31d", csrf)
        assert status == 400 and "24h" in problem["error"]
