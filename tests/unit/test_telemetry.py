"""The operators' registry: what /metrics renders parses with Prometheus's own parser, readings
are read at scrape time, and no label set can grow without bound."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ivr.telemetry import Telemetry


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
