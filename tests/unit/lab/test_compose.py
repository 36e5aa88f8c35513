"""docker/compose.py's reading of depends_on: which services start after which, and on what
condition, from the shipped compose.yaml and from literal services. (Starting containers and
running their health checks is tests/integration/test_containers.py.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]


def load_compose() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docker_compose", REPO / "docker" / "compose.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("docker_compose", module)
    spec.loader.exec_module(module)
    return module


compose = load_compose()


def test_the_list_form_waits_for_a_start_and_the_mapping_names_its_condition() -> None:
    assert compose.depends_on("c", {"depends_on": ["db", "bus"]}) == {"db": "service_started", "bus": "service_started"}
    assert compose.depends_on("c", {"depends_on": {"db": {"condition": "service_healthy"}, "bus": None}}) == {
        "db": "service_healthy",
        "bus": "service_started",
    }
    assert compose.depends_on("c", {}) == {}
    with pytest.raises(SystemExit, match="service_completed_successfully not supported"):
        compose.depends_on("c", {"depends_on": {"db": {"condition": "service_completed_successfully"}}})


def test_services_start_after_what_they_depend_on_in_the_files_order_otherwise() -> None:
    services: dict[str, dict[str, Any]] = {
        "app": {"depends_on": {"db": {"condition": "service_healthy"}}},
        "app2": {"depends_on": {"app": {"condition": "service_healthy"}, "db": {}}},
        "db": {},
        "sms": {},
    }
    assert compose.start_order(services, ["app", "app2", "db", "sms"]) == ["db", "app", "app2", "sms"]
    # a dependency not started now must be running already: it is not added
    assert compose.start_order(services, ["app2"]) == ["app2"]
    with pytest.raises(SystemExit, match="cycle"):
        compose.start_order({"a": {"depends_on": ["b"]}, "b": {"depends_on": ["a"]}}, ["a", "b"])
    with pytest.raises(SystemExit, match="does not define"):
        compose.start_order({"a": {"depends_on": ["nope"]}}, ["a"])


def test_the_shipped_stack_starts_the_database_and_redis_healthy_before_the_controllers_one_by_one() -> None:
    services = compose.load()["services"]
    chosen = [n for n, s in services.items() if not s.get("profiles") or "nodes" in s["profiles"]]
    order = compose.start_order(services, chosen)
    assert order.index("postgres") < order.index("controller") < order.index("controller-2")
    assert order.index("redis") < order.index("controller")
    assert compose.depends_on("controller", services["controller"])["postgres"] == "service_healthy"
    # the second node starts once the first has migrated the database and leads the ACD
    assert compose.depends_on("controller-2", services["controller-2"])["controller"] == "service_healthy"
