"""The runs at 80% of the ceiling, summed up as the issue's targets read them: every run's calls
and failures, the worst p99 of all runs, the CPU per call's median and range, and this code
against the base code run by run (bench/calls_per_second.py)."""

from __future__ import annotations

import pytest

from bench.calls_per_second import Step, report


def run(route: str, cpu_ms: float, *, failed: int = 0, lag: float = 0.002) -> Step:
    calls = 2000
    return Step(
        call="short",
        route=route,
        rate=200.0,
        calls=calls,
        ok=not failed,
        successful=calls - failed,
        failed=failed,
        journeys=calls - failed,
        answer_p95_ms=40.0,
        wall_s=10.0,
        controller_cpu=cpu_ms * calls / 1000 / 10.0,  # share of a core over the 10 s
        asterisk_cpu=0.5,
        why="",
        probes={"control p99": 0.002, "lag p99": lag, "first p99": 0.005, "lookup p99": 0.001},
    )


def test_the_runs_at_80_percent_are_summed_per_route_and_compared_run_by_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = [
        run("ivr", 1.10),
        run("ivr-base", 1.02),
        run("ivr-base", 1.12, lag=0.010),
        run("ivr", 1.00, failed=1),
        run("ivr", 1.04),
        run("ivr-base", 1.10),
    ]
    report("short", ["bare", "ivr", "ivr-base"], [{"bare": 230.0, "ivr": 240.0, "ivr-base": 235.0}], steps)
    lines = {line.split(" at 80%")[0].strip(): line for line in capsys.readouterr().out.splitlines() if "80%" in line}
    assert "5999/6000 calls ok, 1 failed" in lines["ivr"]
    assert "CPU per call median 1.04, range 1.00-1.10 (runs 1.10, 1.00, 1.04) ms" in lines["ivr"]
    assert "worst p99 control command 2.0 ms, loop lag 2.0 ms" in lines["ivr"]
    assert "6000/6000 calls ok, 0 failed; worst p99 control command 2.0 ms, loop lag 10.0 ms" in lines["ivr-base"]
    assert "CPU per call median 1.10, range 1.02-1.12" in lines["ivr-base"]
    # 1.10/1.02, 1.00/1.12, 1.04/1.10: each run of this code against the base code's run beside it
    assert "ivr / ivr-base CPU per call" in lines and "rounds 1.08, 0.89, 0.95" in lines["ivr / ivr-base CPU per call"]
