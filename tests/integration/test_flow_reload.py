"""Admins edit flow files under a live controller: SIGHUP (or the watcher) loads the new version,
a broken edit keeps the last good one, and every call says which version it ran."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from lab.asterisk import AsteriskLab
from lab.controller import ControllerProcess
from lab.sipp import CallerScript, run_caller

REPO = Path(__file__).resolve().parents[2]


def call(controller: ControllerProcess, caller: str) -> dict[str, Any]:
    run_caller(CallerScript(caller_id=caller, hangup_after_ms=1500)).raise_for_failure()
    return controller.wait_for_journey(lambda j: j["caller"] == caller and j["status"] == "abandoned")


def test_reload_new_version_and_keep_last_good(lab: AsteriskLab, tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(REPO / "dialplans", flows)
    controller = ControllerProcess(
        flows_dir=flows, data_dir=tmp_path / "ivr", env={"IVR_FLOWS_WATCH_INTERVAL": "3600"}
    )  # only SIGHUP reloads here
    controller.start()
    try:
        v1 = call(controller, "+15551231001")["version"]
        support = flows / "support.yaml"
        support.write_text(support.read_text().replace("timeout: 4", "timeout: 5"))
        controller.reload()
        controller.wait_for_log("loaded flow support@")
        v2 = call(controller, "+15551231002")["version"]
        assert v2 != v1

        support.write_text(support.read_text().replace("    say: Welcome", "    sya: Welcome"))
        controller.reload()
        controller.wait_for_log("is broken; keeping support@" + v2)
        assert call(controller, "+15551231003")["version"] == v2
        assert "unknown step kind or key 'sya'" in controller.log_tail(80)

        # an alias bomb (9 ** 8 words: before the limit, 18 s and 254 MB on the loop) and a 10 MB file
        # (16 s): refused at once, and calls go on on the last good version
        anchors = ["&a [x, x, x, x, x, x, x, x, x]"] + [
            f"&{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)
        ]
        support.write_text(
            "flow: support\nstart: s\ndescription: [" + ", ".join(anchors) + "]\nsteps:\n  s: {say: Hi.}\n"
        )
        (flows / "huge.yaml").write_text("flow: huge\nstart: s\nsteps:\n  s: {say: Hi.}\n#" + "x" * 10_000_000 + "\n")
        started = time.monotonic()
        controller.reload()
        controller.wait_for_log("huge.yaml is broken and was not loaded")
        controller.wait_for_log("expand to more than 50000 nodes")
        assert time.monotonic() - started < 10
        assert call(controller, "+15551231004")["version"] == v2
        assert "file too big" in controller.log_tail(200)
    finally:
        controller.stop()
