"""The composition root wires through constructors: nothing is assigned into another object after it is built."""

from __future__ import annotations

import ast
from pathlib import Path

from ivr.acd.desk import ChatsViaLeader
from ivr.app import App
from ivr.config import load_config

APP = Path(__file__).resolve().parents[2] / "ivr" / "app.py"
DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"


def assignments_into_other_objects(source: str) -> list[str]:
    """``self.chat.handoff = ...``, ``x.y = ...``: any assignment whose target is an attribute of
    something other than ``self`` itself (``self.x = ...`` is the App's own state)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = [
                t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])
            ]
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and not (
                isinstance(target.value, ast.Name) and target.value.id == "self"
            ):
                found.append(f"line {target.lineno}: {ast.unparse(target)}")
    return found


def test_the_finder_sees_assignments_into_other_objects() -> None:
    code = "self.a = 1\nself.chat.handoff = f\nself.x.y, self.z = 1, 2\nobj.attr += 1\n"
    assert assignments_into_other_objects(code) == ["line 2: self.chat.handoff", "line 3: self.x.y", "line 4: obj.attr"]


def test_the_app_assigns_nothing_into_the_objects_it_built() -> None:
    assert assignments_into_other_objects(APP.read_text()) == []
    assert "Any" not in {n.id for n in ast.walk(ast.parse(APP.read_text())) if isinstance(n, ast.Name)}


def test_every_channel_gets_its_dependencies_at_construction(tmp_path: Path) -> None:
    config = load_config(
        environ={
            "IVR_FLOWS_DIR": str(DIALPLANS),
            "IVR_DATA_DIR": str(tmp_path),
            "IVR_HANDOFF_SECRET": "s" * 32,
            "IVR_SMS_PROVIDER": "kannel",
            "IVR_SMS_KANNEL_PASSWORD": "pw",
            "IVR_ROUTING_QUEUES": "main,billing,support,outage,sales,billing-es",
        }
    )
    app = App(config)
    assert app.sms is not None
    for runner in (app.inbound.handoff, app.chat.handoff, app.sms.text.handoff):
        assert runner == app.handoffs.send
    assert app.handoffs.sms is app.sms.outbox
    assert app.inbound.open_journeys is not None
    assert app.inbound.queue_desk is None  # no AMI: no live queue state for estimates
    assert app.inbound.speech is app.speech_slot and app.speech_slot.current is None
    assert isinstance(app.chat_settings.agents, ChatsViaLeader) and app.chat_settings.agents.desk is app.desk
    assert app.chat_settings.agents.acd is app.acd and app.chat_settings.bus is app.bus
    assert app.chat_settings.call_me is None
    assert app.inbound.routing is app.routing and app.chat.routing is app.routing
    assert "billing-es" in app.routing.queues
    assert app.handoffs.base_url == f"http://127.0.0.1:{app.web.port}"
