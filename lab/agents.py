"""Agents for tests and the demo, created the way an admin does it: ``ivr agents add``.

Running the real command (not inserting rows) keeps the tests on the path a user takes: the
password is read from stdin and hashed by the product, the skills parsed by the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def add_agent(
    data_dir: Path,
    username: str,
    endpoint: str,
    skills: Sequence[str],
    password: str,
    *,
    name: str | None = None,
    role: str = "agent",
    phone: str = "sip",
    env: Mapping[str, str] | None = None,
) -> None:
    """``ivr agents add`` against the database in ``data_dir``; raises CalledProcessError on refusal.
    ``role="supervisor"``: a wallboard account (no endpoint, no skills). ``phone="browser"``: the
    desktop's own softphone rings (endpoint ``<endpoint>-webrtc``). ``env``: more settings for the
    command, e.g. ``IVR_DATABASE_URL`` for a shared database (``data_dir`` then only holds logs)."""
    argv = [sys.executable, "-m", "ivr.cli", "agents", "add", username, "--name", name or username.title()]
    argv += ["--role", role]
    if phone != "sip":
        argv += ["--phone", phone]
    if endpoint:
        argv += ["--endpoint", endpoint]
    for skill in skills:
        argv += ["--skill", skill]
    subprocess.run(
        [*argv, "--password-stdin"],
        input=password + "\n",
        text=True,
        check=True,
        env={**os.environ, "IVR_DATA_DIR": str(data_dir), **(env or {})},
        capture_output=True,
    )
