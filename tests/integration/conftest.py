"""Shared fixtures for tests on the real lab: one Asterisk 22 for the session, prompts rendered
into its sounds directory, and the controller as a child process (``ivr serve``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess, ControllerSlot
from lab.lock import lab_session_lock
from lab.postgres import PostgresServer, throwaway_postgres
from lab.prompts import build_flow_prompts, prompt_lengths
from lab.require import require

REPO = Path(__file__).resolve().parents[2]
DIALPLANS = REPO / "dialplans"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def lab_lock() -> Iterator[None]:
    """One test session at a time on the lab (see lab.lock)."""
    with lab_session_lock():
        yield


@pytest.fixture(scope="session")
def lab(lab_lock: None) -> Iterator[AsteriskLab]:
    """The session's Asterisk; started here unless one of this root is already running."""
    lab = AsteriskLab()
    lab.provision()
    lab.install_config()
    build_flow_prompts(DIALPLANS, lab.sounds_dir)
    started = not lab.is_running()
    if started:
        lab.start()
    yield lab
    if started:
        lab.stop()


@pytest.fixture(scope="session")
def prompt_ms(lab: AsteriskLab) -> dict[str, int]:
    """Length in ms of each rendered prompt, keyed by its text: tests time their key presses by it."""
    return prompt_lengths(lab.sounds_dir)


def default_controller(lab: AsteriskLab, data_dir: Path) -> ControllerProcess:
    """``ivr serve`` on the shipped dialplans, started.

    As in production, the controller reads the prompts Asterisk plays (spoken menus play them over
    the AudioSocket); the lab's sounds live inside its root.
    """
    proc = ControllerProcess(flows_dir=DIALPLANS, data_dir=data_dir, env={"IVR_SPEECH_SOUNDS_DIR": str(lab.sounds_dir)})
    proc.start(timeout=60)  # the speech model loads before the AGI port opens: slow on a busy machine
    return proc


@pytest.fixture(scope="module")
def controller_slot(lab: AsteriskLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerSlot]:
    """The module's shared ``ivr serve`` (lab.controller.ControllerSlot), stopped after its last test."""
    slot = ControllerSlot(lambda: default_controller(lab, tmp_path_factory.mktemp("ivr")))
    yield slot
    slot.release()


@pytest.fixture
def shared_controller(controller_slot: ControllerSlot) -> ControllerProcess:
    """One ``ivr serve`` for the module's tests that neither kill, reload nor reconfigure it, and
    tell their calls apart by caller id (the journeys of the tests before are in its database)."""
    return controller_slot.get()


@pytest.fixture
def no_controller(controller_slot: ControllerSlot) -> None:
    """Nothing on the AGI port: the module's shared controller, if one runs, is stopped first."""
    controller_slot.release()


@pytest.fixture
def controller(lab: AsteriskLab, tmp_path: Path, no_controller: None) -> Iterator[ControllerProcess]:
    """A fresh ``ivr serve`` of the test's own (to kill, reload or read from an empty database)."""
    proc = default_controller(lab, tmp_path / "ivr")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL for the session (lab.postgres), on a free loopback port.

    Where PostgreSQL is not installed the PostgreSQL half of the suite is skipped, except in CI
    (``CI`` set), where that is a failure (lab.require): both databases must pass there.
    """
    require("postgresql")
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend, so the same test runs on SQLite and on PostgreSQL.

    For ``ivr serve`` (ControllerProcess) pass ``env={"IVR_DATABASE_URL": database_url}``.
    """
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ivr.sqlite3'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = server.create_database(name)
    yield url
    server.drop_database(name)
