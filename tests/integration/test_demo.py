"""The README's main command, end to end: ``python -m lab.demo`` runs every scene green.

The demo is run as a user runs it (a subprocess: its own Asterisk, Kannel, ``ivr serve``,
Chromium), and judged by what it prints and leaves: exit code 0, a summary line "ok" for every
registered scene, and the agent's screen-pop screenshot as a PNG at the path it printed.

This session already holds the lab lock (the ``lab`` fixture), so the demo is told so
(``IVR_LAB_LOCK_HELD``) instead of waiting for itself; it restarts Asterisk with its own AMI
secret, so the session's Asterisk is put back afterwards for the tests that follow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.asterisk import AsteriskLab
from lab.demo import scenes as _registered  # noqa: F401  (importing registers the scenes)
from lab.demo.registry import select
from lab.lock import HELD_BY_PARENT

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.requires("sipp", "chromium", "kannel", "whisper-model")
def test_the_demo_runs_every_scene_green(lab: AsteriskLab, tmp_path: Path) -> None:
    scenes = [s.name for s in select([])]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "lab.demo", "--work-dir", str(tmp_path / "demo")],
            cwd=REPO,
            env={**os.environ, HELD_BY_PARENT: "1"},
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        lab.install_config()  # the session's AMI secret again
        lab.start()
    out = done.stdout
    (tmp_path / "demo.log").write_text(out + done.stderr)
    assert done.returncode == 0, out[-6000:] + done.stderr[-3000:]
    summary = out[out.index("== Summary") :]
    for name in scenes:
        line = next((x for x in summary.splitlines() if x.startswith(name + " ")), None)
        assert line is not None and line.endswith("  ok"), (name, summary)
    assert f"{len(scenes)} of {len(scenes)} scenes ok" in summary
    shot = re.search(r"screenshot: (\S+\.png)", out)
    assert shot, out
    path = Path(shot[1])
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000  # a painted card, not an empty page
