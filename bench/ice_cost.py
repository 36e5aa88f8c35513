"""What rtp.conf's ``icesupport = yes`` costs plain SIP calls: Asterisk's CPU per call, on and off.

    .venv/bin/python bench/ice_cost.py [--rate 30] [--seconds 8] [--rounds 3]

One lab Asterisk 22. SIPp places the dialplan-only short call (``bench-dialplan``: answer, play
``beep``, hang up, through the lab's ``bench`` endpoint, which has no ``ice_support``) at
``--rate`` calls/s for ``--seconds``, once with ``icesupport = yes`` and once with ``no`` in the
lab's rtp.conf (``module reload res_rtp_asterisk.so`` between, checked with ``rtp show
settings``), the order flipping each round so whatever else runs on the machine weighs on both.
Asterisk's CPU (utime + stime of its process) over each run is divided by the calls it completed.

Why this matters and why the answer is not simply "turn it off": with ``icesupport = yes``
res_rtp_asterisk creates an ICE session (pjnath, host candidates of every local address) for
every RTP instance, and res_pjsip stops it again for each endpoint without ``ice_support``; but
the endpoint setting cannot create one, so ``icesupport = no`` would leave the browser
softphones (``webrtc = yes`` endpoints) without ICE, which browsers require. The lab's rtp.conf is
put back as it was at the end. Raw numbers go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.asterisk import AsteriskLab  # noqa: E402
from lab.lock import lab_session_lock  # noqa: E402
from lab.sipp import CallerScript, run_load  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
_ICE_LINE = re.compile(r"^(icesupport\s*=\s*)(yes|no)\b", re.MULTILINE)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def set_ice(lab: AsteriskLab, on: bool) -> None:
    conf = lab.etc_dir / "rtp.conf"
    text = conf.read_text()
    if not _ICE_LINE.search(text):
        raise SystemExit(f"no icesupport line in {conf}")
    conf.write_text(_ICE_LINE.sub(lambda m: m.group(1) + ("yes" if on else "no"), text, count=1))
    lab.cli("module reload res_rtp_asterisk.so")
    shown = lab.cli("rtp show settings")
    match = re.search(r"ICE support:\s*(\w+)", shown)
    if match is None or (match.group(1).lower() == "yes") != on:
        raise SystemExit(f"rtp.conf reload did not take (icesupport {on}):\n{shown}")


def run(lab: AsteriskLab, rate: float, seconds: float) -> dict[str, float]:
    calls = max(10, int(rate * seconds))
    script = CallerScript(from_user="bench", dialled="bench-dialplan", max_call_ms=15000)
    pid = lab.server_pid()
    if pid is None:
        raise SystemExit("the lab's Asterisk is not running")
    cpu0, wall0 = proc_cpu(pid), time.monotonic()
    result = run_load(script, rate=rate, calls=calls, timeout=seconds * 3 + 30)
    cpu, wall = proc_cpu(pid) - cpu0, time.monotonic() - wall0
    done = max(result.successful, 1)
    return {
        "calls": calls,
        "successful": result.successful,
        "failed": result.failed,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_call": cpu * 1000 / done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="calls per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds of calls per run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (on, off), order flipping")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with lab_session_lock():
        lab = AsteriskLab()
        lab.provision()
        lab.install_config()
        if not lab.is_running():
            lab.start()
        original = (lab.etc_dir / "rtp.conf").read_text()
        try:
            for n in range(args.rounds):
                for on in (True, False) if n % 2 == 0 else (False, True):
                    set_ice(lab, on)
                    figures = run(lab, args.rate, args.seconds)
                    rows.append({"round": n + 1, "icesupport": "yes" if on else "no", **figures})
                    print(
                        f"round {n + 1} icesupport={'yes' if on else 'no ':3}  {figures['successful']:4.0f}/"
                        f"{figures['calls']:.0f} calls  Asterisk CPU {figures['cpu_s']:.2f} s over "
                        f"{figures['wall_s']:.1f} s = {figures['cpu_ms_per_call']:.2f} ms/call",
                        flush=True,
                    )
        finally:
            (lab.etc_dir / "rtp.conf").write_text(original)
            lab.cli("module reload res_rtp_asterisk.so")
    by_mode = {
        mode: [float(str(r["cpu_ms_per_call"])) for r in rows if r["icesupport"] == mode] for mode in ("yes", "no")
    }
    ratios = [
        float(str(on["cpu_ms_per_call"])) / float(str(off["cpu_ms_per_call"]))
        for on, off in zip(
            [r for r in rows if r["icesupport"] == "yes"], [r for r in rows if r["icesupport"] == "no"], strict=True
        )
    ]
    print(
        f"\nAsterisk CPU per call, median: icesupport=yes {statistics.median(by_mode['yes']):.2f} ms, "
        f"no {statistics.median(by_mode['no']):.2f} ms; yes/no per round "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f" (median {statistics.median(ratios):.2f})"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ice_cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "runs": rows, "ratios": ratios}, indent=2))
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
