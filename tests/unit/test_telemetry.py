"""The operators' registry: what /metrics renders parses with Prometheus's own parser, readings
are read at scrape time, and no label set can grow without bound."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from ivr.telemetry import LoopLagProbe, Telemetry


def families(telemetry: Telemetry) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """family name -> {(sample name, labels): value}, from the rendered text."""
    found: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(telemetry.render().decode()):
        found[family.name] = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
    return found


def test_readings_are_read_at_each_scrape_and_typed() -> None:
    telemetry = Telemetry(process=False)
    active = [3]
    telemetry.gauge("ivr_agi_calls_active", "Calls in progress.", lambda: active[0])
    telemetry.counter("ivr_agi_calls", "Calls.", lambda: 41)
    assert families(telemetry)["ivr_agi_calls_active"] == {("ivr_agi_calls_active", ()): 3.0}
    active[0] = 200
    found = families(telemetry)
    assert found["ivr_agi_calls_active"] == {("ivr_agi_calls_active", ()): 200.0}
    assert found["ivr_agi_calls"] == {("ivr_agi_calls_total", ()): 41.0}
    types = {f.name: f.type for f in text_string_to_metric_families(telemetry.render().decode())}
    assert types["ivr_agi_calls_active"] == "gauge" and types["ivr_agi_calls"] == "counter"


def test_histograms_count_observations_in_their_buckets() -> None:
    telemetry = Telemetry(process=False)
    for seconds in (0.0003, 0.0004, 0.2):
        telemetry.agi_command_seconds.observe(seconds)
    telemetry.journey_batch_seconds.observe(0.004)
    telemetry.speech_decode_seconds.observe(0.6)
    found = families(telemetry)
    command = found["ivr_agi_command_seconds"]
    assert command[("ivr_agi_command_seconds_count", ())] == 3
    assert command[("ivr_agi_command_seconds_bucket", (("le", "0.0005"),))] == 2
    assert command[("ivr_agi_command_seconds_bucket", (("le", "0.25"),))] == 3
    assert found["ivr_journey_batch_seconds"][("ivr_journey_batch_seconds_count", ())] == 1
    assert found["ivr_speech_decode_seconds"][("ivr_speech_decode_seconds_bucket", (("le", "0.5"),))] == 0
    assert found["ivr_speech_decode_seconds"][("ivr_speech_decode_seconds_bucket", (("le", "0.75"),))] == 1


def test_http_statuses_are_a_bounded_label_set() -> None:
    telemetry = Telemetry(process=False)
    for status in (200, 200, 404, 99, 600, 1234):
        telemetry.http_response(status)
    http = families(telemetry)["ivr_http_requests"]
    assert http == {
        ("ivr_http_requests_total", (("code", "200"),)): 2,
        ("ivr_http_requests_total", (("code", "404"),)): 1,
        ("ivr_http_requests_total", (("code", "other"),)): 3,
    }


def test_each_telemetry_has_its_own_registry() -> None:
    one, two = Telemetry(process=False), Telemetry(process=False)
    one.http_response(200)
    assert ("ivr_http_requests_total", (("code", "200"),)) not in families(two).get("ivr_http_requests", {})


def test_process_figures_come_from_proc() -> None:
    found = families(Telemetry())
    assert found["process_cpu_seconds"][("process_cpu_seconds_total", ())] > 0
    assert found["process_open_fds"][("process_open_fds", ())] > 0


def test_the_loop_histogram_renders_what_the_librarys_histogram_renders() -> None:
    """Same buckets, same observations (bounds themselves, between them, beyond the last): the
    text of our lock-free histogram equals prometheus_client's own, line for line."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from ivr.telemetry import COMMAND_BUCKETS, LoopHistogram

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop = LoopHistogram("h_seconds", "A histogram.", COMMAND_BUCKETS)
    ours.register(loop)
    library = Histogram("h_seconds", "A histogram.", buckets=COMMAND_BUCKETS, registry=theirs)
    for value in (0.0, 0.0005, 0.0006, 0.001, 0.3, 1, 59.9, 60, 61, 1e6):
        loop.observe(value)
        library.observe(value)
    assert loop.count == 10
    mine = [line for line in generate_latest(ours).decode().splitlines() if not line.startswith("h_seconds_created")]
    library_lines = generate_latest(theirs).decode().splitlines()
    assert mine == [
        line
        for line in library_lines
        if not line.startswith(("h_seconds_created", "# HELP h_seconds_created", "# TYPE h_seconds_created"))
    ]


def test_the_call_path_probes_are_registered_histograms() -> None:
    """Every probe the call path feeds renders as a histogram, fine below 5 ms (the targets)."""
    telemetry = Telemetry(process=False)
    probes = {
        "ivr_agi_control_command_seconds": telemetry.agi_control_seconds,
        "ivr_agi_first_command_seconds": telemetry.agi_first_command_seconds,
        "ivr_event_loop_lag_seconds": telemetry.loop_lag_seconds,
        "ivr_caller_lookup_seconds": telemetry.caller_lookup_seconds,
        "ivr_customer_create_seconds": telemetry.customer_create_seconds,
        "ivr_flow_step_seconds": telemetry.flow_seconds,
    }
    for histogram in probes.values():
        histogram.observe(0.004)
        histogram.observe(0.006)
    types = {f.name: f.type for f in text_string_to_metric_families(telemetry.render().decode())}
    found = families(telemetry)
    for name in probes:
        assert types[name] == "histogram"
        assert found[name][(f"{name}_bucket", (("le", "0.005"),))] == 1  # 5 ms is a bound
        assert found[name][(f"{name}_count", ())] == 2


def test_loop_lag_is_how_late_the_sleep_woke_and_warnings_are_rate_limited() -> None:
    seen: list[float] = []
    probe = LoopLagProbe(seen.append, interval=0.05, warn_after=0.1, warn_every=10.0)
    assert probe.lag(100.0, 100.05) == 0.0
    assert probe.lag(100.0, 100.049) == 0.0  # woken early by the timer's resolution: no negative lag
    assert abs(probe.lag(100.0, 100.25) - 0.2) < 1e-9
    assert probe.note(0.2, now=100.0) is True  # over warn_after: worth a warning
    assert probe.note(0.3, now=105.0) is False  # but not twice within warn_every
    assert probe.note(0.01, now=200.0) is False  # small lags never warn
    assert probe.note(0.2, now=200.0) is True
    assert seen == [0.2, 0.3, 0.01, 0.2] and probe.worst == 0.3


async def test_the_probe_sees_a_callback_that_holds_the_loop_and_stops_cleanly() -> None:
    """A real loop: 80 ms of blocking work shows as >= 70 ms of lag; stop cancels and awaits the task."""
    telemetry = Telemetry(process=False)
    probe = LoopLagProbe(telemetry.loop_lag_seconds.observe, interval=0.01)
    await probe.start()
    await asyncio.sleep(0.05)
    time.sleep(0.08)  # noqa: ASYNC251 -- the point: a stall, sync work on the loop
    await asyncio.sleep(0.05)
    await probe.stop()
    assert probe.worst >= 0.07
    assert telemetry.loop_lag_seconds.count >= 3
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag-probe"]
    assert tasks == []
    await probe.stop()  # idempotent
