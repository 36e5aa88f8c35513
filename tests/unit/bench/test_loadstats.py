"""The bench's conclusions from literal SIPp and /metrics text: failed calls classified, ratios
paired round by round, a step's own histogram between two scrapes."""

from __future__ import annotations

import pytest

from bench.loadstats import (
    Failure,
    Spread,
    classify,
    classify_failures,
    count,
    histogram_delta,
    histograms,
    quantile,
    ratio_summary,
)
from lab.sipp import parse_error_log

STAMP = "2026-12-03\t15:47:02.318411\t1764776822.318411: "

#: SIPp 3.6's -trace_err, as the caller scenario of lab/sipp.py leaves it: Asterisk refusing a
#: new call while the caller waits for the answer, a BYE that never came, a stray 200 in the call.
ERROR_LOG = (
    f"{STAMP}Aborting call on unexpected message for Call-Id '812-20411@127.0.0.1': while expecting '200' "
    "(index 7), received 'SIP/2.0 503 Service Unavailable\n"
    "Via: SIP/2.0/UDP 127.0.0.1:40211;rport=40211;received=127.0.0.1;branch=z9hG4bK-20411-812-0\n"
    "Call-ID: 812-20411@127.0.0.1\n"
    "CSeq: 1 INVITE\n"
    "Server: Asterisk PBX 22.1.0\n"
    "Content-Length:  0\n"
    "\n"
    "'.\n"
    f"{STAMP}Aborting call on unexpected message for Call-Id '813-20411@127.0.0.1': while expecting '200' "
    "(index 7), received 'SIP/2.0 503 Service Unavailable\n"
    "Call-ID: 813-20411@127.0.0.1\n"
    "'.\n"
    f"{STAMP}Call-Id: 900-20411@127.0.0.1, receive timeout on message BYE:11 without label to jump to "
    "(ontimeout attribute): aborting call\n"
    f"{STAMP}Aborting call on unexpected message for Call-Id '901-20411@127.0.0.1': while expecting 'BYE' "
    "(index 11), received 'SIP/2.0 200 OK\n"
    "CSeq: 1 INVITE\n"
    "'.\n"
    f"{STAMP}Call-Id: 950-20411@127.0.0.1, receive timeout on message BYE:11, jumping to label 14\n"
)


def test_failed_calls_are_classified_by_message_phase_and_side() -> None:
    events = parse_error_log(ERROR_LOG)  # the ontimeout notice of a caller that hung up is benign
    assert len(events) == 4
    found = classify_failures(events)
    assert found == {
        Failure("set-up", "asterisk", "200", "503 Service Unavailable"): 2,
        Failure("in call", "asterisk", "BYE", "-"): 1,
        Failure("in call", "asterisk", "BYE", "200 OK"): 1,
    }
    assert str(Failure("set-up", "asterisk", "200", "503 Service Unavailable")) == (
        "set-up: expected 200, got '503 Service Unavailable' (from asterisk)"
    )
    assert str(Failure("in call", "asterisk", "BYE", "-")) == "in call: expected BYE, got nothing (from asterisk)"


def test_other_sipp_wordings_are_classified_too() -> None:
    """SIPp words an unexpected response differently when it waited for a response, and a
    request (a BYE before the answer) is named by its method."""
    assert classify(
        "Aborting call on unexpected message for Call-ID '5-1@127.0.0.1': while expecting '200' response, "
        "received 'BYE sip:lab@127.0.0.1:5061 SIP/2.0\nCSeq: 102 BYE\n' "
    ) == Failure("set-up", "asterisk", "200", "BYE")
    assert classify(
        "Aborting call on unexpected message for Call-Id '6-1@127.0.0.1': while expecting '180' (index 3). "
        "Response '486' does not match"
    ) == Failure("set-up", "asterisk", "180", "486")
    # a BYE retransmitted by Asterisk after SIPp finished the call: late, not failed
    assert classify(
        "Dead call 50-2264@127.0.0.1 (successful), received 'BYE sip:lab@127.0.0.1:55571 SIP/2.0\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKPj1\n'"
    ) == Failure("after the end", "asterisk", "nothing (successful)", "BYE")
    unknown = classify("something SIPp has never said before\nsecond line")
    assert unknown == Failure("unknown", "unknown", "?", "something SIPp has never said before")


def test_ratios_are_paired_round_by_round_with_median_and_spread() -> None:
    summary = ratio_summary([(228.0, 240.0), (240.0, 240.0), (190.0, 200.0)])
    assert summary.ratios == (0.95, 1.0, 0.95)
    assert summary.median == 0.95
    assert summary.low == 0.95 and summary.high == 1.0
    assert summary.spread == pytest.approx(0.05)
    assert summary.meets(0.95, 0.9)
    assert not ratio_summary([(0.85 * 200, 200.0), (200.0, 200.0), (200.0, 200.0)]).meets(0.95, 0.9)  # one round < 0.9
    assert str(summary).startswith("median 0.95, range 0.95-1.00 (spread 0.05")
    assert ratio_summary([(100.0, 0.0), (90.0, 100.0)]).ratios == (0.9,)  # a route that never passed is no pair
    with pytest.raises(ValueError):
        ratio_summary([(100.0, 0.0)])


METRICS_BEFORE = """\
# HELP ivr_agi_control_command_seconds Round trip.
# TYPE ivr_agi_control_command_seconds histogram
ivr_agi_control_command_seconds_bucket{le="0.001"} 90.0
ivr_agi_control_command_seconds_bucket{le="0.005"} 100.0
ivr_agi_control_command_seconds_bucket{le="+Inf"} 100.0
ivr_agi_control_command_seconds_sum 0.05
ivr_agi_control_command_seconds_count 100.0
# HELP ivr_agi_calls_total Calls.
# TYPE ivr_agi_calls_total counter
ivr_agi_calls_total 100.0
"""
METRICS_AFTER = """\
# HELP ivr_agi_control_command_seconds Round trip.
# TYPE ivr_agi_control_command_seconds histogram
ivr_agi_control_command_seconds_bucket{le="0.001"} 180.0
ivr_agi_control_command_seconds_bucket{le="0.005"} 195.0
ivr_agi_control_command_seconds_bucket{le="+Inf"} 200.0
ivr_agi_control_command_seconds_sum 0.9
ivr_agi_control_command_seconds_count 200.0
"""


def test_a_steps_percentiles_come_from_the_difference_of_two_scrapes() -> None:
    before = histograms(METRICS_BEFORE)
    after = histograms(METRICS_AFTER)
    assert set(after) == {"ivr_agi_control_command_seconds"}  # counters are not histograms
    step = histogram_delta(before["ivr_agi_control_command_seconds"], after["ivr_agi_control_command_seconds"])
    assert step == ((0.001, 90.0), (0.005, 95.0), (float("inf"), 100.0))
    assert count(step) == 100
    assert quantile(step, 0.5) == 0.001
    assert quantile(step, 0.95) == 0.005
    assert quantile(step, 0.99) == float("inf")  # 5 of this step's 100 were over 5 ms
    # over the whole life of the process the same p99 looked fine: why the bench takes differences
    assert quantile(after["ivr_agi_control_command_seconds"], 0.95) == 0.005
    assert quantile(((0.001, 0.0), (float("inf"), 0.0)), 0.99) is None
    assert histogram_delta(None, step) == step


def test_a_measure_over_runs_gives_its_median_and_range() -> None:
    spread = Spread((1.10, 1.02, 1.05))
    assert spread.median == 1.05
    assert str(spread) == "median 1.05, range 1.02-1.10 (runs 1.10, 1.02, 1.05)"
    with pytest.raises(ValueError):
        Spread(())
