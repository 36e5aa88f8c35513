"""``ivr test`` and ``ivr simulate`` as an admin types them (child processes, no database)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"


def ivr(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IVR_DATA_DIR": str(data_dir)}
    env.pop("IVR_DATABASE_URL", None)
    env.pop("IVR_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "ivr.cli", *args], env=env, capture_output=True, text=True, timeout=120, cwd=data_dir
    )


def test_the_shipped_scenarios_pass(tmp_path: Path) -> None:
    done = ivr(tmp_path, "test", str(DIALPLANS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout and done.stdout.count("ok    ") >= 7
    assert not (tmp_path / "ivr.sqlite3").exists()  # nothing written, not even an empty database


def test_a_failed_scenario_exits_non_zero_with_the_path_diff(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(DIALPLANS, flows)
    scenario = flows / "scenarios" / "support.yaml"
    scenario.write_text(
        scenario.read_text().replace(
            "path: [greeting, check_hours, main_menu, to_agent]",
            "path: [greeting, check_hours, main_menu, to_billing]",
            1,
        )
    )
    done = ivr(tmp_path, "test", str(flows))
    assert done.returncode == 1
    assert "FAIL  support.yaml: asks for a person in chat, in their own words" in done.stdout
    assert "    -to_billing\n    +to_agent" in done.stdout


def test_simulate_prints_what_the_caller_hears(tmp_path: Path) -> None:
    done = ivr(tmp_path, "simulate", "support", "--flows", str(DIALPLANS), "--input", "2", "--input", "1")
    assert done.returncode == 0, done.stderr
    assert "[outage_info] We are aware of outages" in done.stdout
    assert "[to_outage] -> queue outage, skill outage, priority 8" in done.stdout
    assert "path: greeting > check_hours > main_menu > outage_info > outage_menu > to_outage" in done.stdout
