"""Queue names from routing and flows are checked against Asterisk's queues.conf: at start and by ``ivr check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.app import App
from ivr.cli import main
from ivr.config import load_config
from ivr.errors import ConfigError
from ivr.flow.library import queues_named
from ivr.flow.loader import parse_flow
from ivr.routing.queues_conf import check_queues, defined_queues, missing_queues
from ivr.routing.rules import RoutingRules
from tests.unit.bounded import stop_bounded

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "asterisk-config" / "queues.conf"
FLOW = """\
flow: vipline
start: to_vip
steps:
  to_vip:
    queue: {name: vip, priority: 3}
"""


def test_the_shipped_queues_are_its_sections_but_general_and_templates() -> None:
    text = "[general]\nautofill=yes\n[skill-queue](!)\nstrategy=rrmemory\n[main](skill-queue)\n[sales] ; x\n;[old]\n"
    assert defined_queues(text) == {"main", "sales"}
    assert defined_queues(SHIPPED.read_text()) == {"main", "billing", "support", "outage", "sales"}


def test_the_default_routing_table_matches_the_shipped_queues() -> None:
    assert check_queues(RoutingRules(), [], SHIPPED).problems == ()


def test_an_unknown_queue_names_the_file_and_the_queue() -> None:
    flow = parse_flow(FLOW, "flows/vipline.yaml")
    rules = RoutingRules(queues=frozenset({"main", "billing-es"}), intent_skills={"pay": "billing"})
    problems = missing_queues(rules, queues_named([flow]), frozenset({"main"}), "queues.conf")
    assert problems == [
        "queues.conf: no queue [billing-es] for routing.queues",
        "routing.intent_skills: intent 'pay' -> skill 'billing', which is not in routing.queues",
        "flows/vipline.yaml:4: to_vip: queues.conf: no queue [vip]",
    ]


def test_an_absent_queues_conf_is_a_warning_not_an_error(tmp_path: Path) -> None:
    found = check_queues(RoutingRules(), [], tmp_path / "queues.conf")
    assert found.problems == () and found.warning and "queues.conf not found" in found.warning


def env(tmp_path: Path, flows: Path, **more: str) -> dict[str, str]:
    return {
        "IVR_FLOWS_DIR": str(flows),
        "IVR_FLOWS_DEFAULT": "vipline",
        "IVR_DATA_DIR": str(tmp_path / "data"),
        "IVR_AGI_PORT": "0",
        "IVR_WEB_PORT": "0",
        "IVR_SPEECH_ENGINE": "off",
        "IVR_ROUTING_QUEUES_CONF": str(SHIPPED),
        **more,
    }


async def test_the_service_refuses_to_start_with_a_queue_asterisk_does_not_define(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "vipline.yaml").write_text(FLOW)
    app = App(load_config(environ=env(tmp_path, flows)))
    with pytest.raises(ConfigError, match=r"vipline.yaml:4: to_vip: .*queues.conf: no queue \[vip\]"):
        await app.start()
    await stop_bounded(app.stop)


def test_ivr_check_reports_the_unknown_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "vipline.yaml").write_text(FLOW)
    for key, value in env(tmp_path, flows).items():
        monkeypatch.setenv(key, value)
    assert main(["check"]) == 1
    assert "no queue [vip]" in capsys.readouterr().out
    monkeypatch.setenv("IVR_ROUTING_QUEUES_CONF", str(tmp_path / "absent.conf"))
    assert main(["check"]) == 0
    assert "not found" in capsys.readouterr().err
