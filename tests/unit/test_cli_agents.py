"""``ivr agents add --role``: a supervisor is an account without a softphone; an agent needs one.
Run as the command a user types (a child process), on SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def ivr(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IVR_DATA_DIR": str(data_dir)}
    env.pop("IVR_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "ivr.cli", *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )


def test_add_a_supervisor_and_list_the_roles(tmp_path: Path) -> None:
    added = ivr(tmp_path, "agents", "add", "sue", "--role", "supervisor", "--password-stdin", stdin="sue-password\n")
    assert added.returncode == 0, added.stderr
    assert "supervisor sue added" in added.stdout
    added = ivr(tmp_path, "agents", "add", "ann", "--endpoint", "agent1001", "--password-stdin", stdin="ann-password\n")
    assert added.returncode == 0, added.stderr
    no_phone = ivr(tmp_path, "agents", "add", "bob", "--password-stdin", stdin="bob-password\n")
    assert no_phone.returncode == 1 and "an agent needs --endpoint" in no_phone.stderr
    listed = ivr(tmp_path, "agents", "list").stdout.splitlines()
    assert [line.split()[1:3] for line in listed] == [["ann", "agent"], ["sue", "supervisor"]]


def test_add_an_admin_for_the_flow_studio(tmp_path: Path) -> None:
    added = ivr(tmp_path, "agents", "add", "ada", "--role", "admin", "--password-stdin", stdin="ada-password\n")
    assert added.returncode == 0, added.stderr
    assert "admin ada added" in added.stdout and "/studio/" in added.stdout
    listed = ivr(tmp_path, "agents", "list").stdout.splitlines()
    assert [line.split()[1:3] for line in listed] == [["ada", "admin"]]


def test_an_agent_s_phone_is_a_sip_phone_unless_set_to_the_browser(tmp_path: Path) -> None:
    added = ivr(tmp_path, "agents", "add", "ann", "--endpoint", "agent1001", "--password-stdin", stdin="ann-password\n")
    assert added.returncode == 0 and "PJSIP/agent1001," in added.stdout, added.stderr
    added = ivr(
        tmp_path, *("agents", "add", "bob", "--endpoint", "agent1002", "--phone", "browser", "--password-stdin"),
        stdin="bob-password\n",
    )  # fmt: skip
    assert added.returncode == 0 and "PJSIP/agent1002-webrtc" in added.stdout, added.stderr
    assert [line.split()[4] for line in ivr(tmp_path, "agents", "list").stdout.splitlines()] == ["sip", "browser"]
    changed = ivr(tmp_path, "agents", "set", "ann", "--phone", "browser")
    assert changed.returncode == 0 and "sessions are closed" in changed.stdout, changed.stderr
    assert [line.split()[4] for line in ivr(tmp_path, "agents", "list").stdout.splitlines()] == ["browser", "browser"]
    assert ivr(tmp_path, "agents", "set", "ann", "--phone", "fax").returncode == 2  # argparse refuses it
    assert "no agent" in ivr(tmp_path, "agents", "set", "zed", "--phone", "sip").stderr


def test_the_command_line_offers_exactly_the_phones_the_store_accepts() -> None:
    from ivr.cli import PHONE_CHOICES
    from ivr.store.agents import PHONES

    assert PHONE_CHOICES == PHONES
