"""What ``calls_per_second.py`` concludes from a run, as pure functions of literal text and numbers.

* :func:`classify_failures`: SIPp's ``-trace_err`` events -> which SIP message went wrong, in which
  phase of the call, and which side it came from. SIPp's own counter (``FailedUnexpectedMessage``)
  says only that *something* unexpected arrived; a 503 while the caller waits for the answer
  (Asterisk refusing new calls) and a BYE that never comes (a channel stuck after the answer)
  are different faults with different owners.
* :func:`ratio_summary`: ivr / bare ceilings paired round by round. A pair is measured minutes
  apart on the same machine, so whatever else runs weighs on both; the median of the pairs and
  their spread say whether a 5% difference is real.
* :func:`histogram_delta` and :func:`quantile`: the controller's Prometheus histograms scraped
  before and after a step, so a step's p99 is that step's alone.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# ------------------------------------------------------------------------------------ failures

_UNEXPECTED = re.compile(
    r"(?:Aborting|Continuing) call on unexpected message for Call-I[Dd] '[^']*': "
    r"while expecting '(?P<expected>[^']+)'(?: response)?(?: \(index \d+\))?[,.]? "
    r"(?:received '(?P<received>[^\n']*)|Response '(?P<response>\w+)' does not match)",
)
#: A message for a call SIPp already finished: Asterisk retransmitting (its BYE got our 200 late).
_DEAD_CALL = re.compile(r"Dead call \S+ \((?P<state>[\w ]+)\), received '(?P<received>[^\n']*)")
_TIMEOUT = re.compile(r"receive timeout on message (?P<expected>[\w-]+):\d+")
_RETRANS = re.compile(r"(?:Max retransmission|retransmission timeout|too many retransmissions)", re.IGNORECASE)
_SEND_FAILED = re.compile(r"(?:Unable to send|send failed|Can't send)", re.IGNORECASE)

#: What our caller scenario (lab/sipp.py) waits for, by phase of the call.
_SETUP = frozenset({"100", "180", "181", "182", "183", "200"})


@dataclass(frozen=True, order=True)
class Failure:
    """One kind of failed call: in which ``phase``, what SIPp ``expected``, what it ``received``
    (a status line's code and reason, or a request's method; ``-`` for nothing), and ``side``:
    ``asterisk`` when Asterisk sent the wrong thing or nothing, ``sipp`` when the caller failed."""

    #: "set-up" (before the answer) | "in call" (waiting for the IVR's BYE) | "after the end" (a
    #: retransmission for a call already over: late, not failed) | "unknown"
    phase: str
    side: str
    expected: str
    received: str

    def __str__(self) -> str:
        got = "nothing" if self.received == "-" else repr(self.received)
        return f"{self.phase}: expected {self.expected}, got {got} (from {self.side})"


def _phase(expected: str) -> str:
    if expected in _SETUP:
        return "set-up"
    if expected == "BYE":
        return "in call"
    return "unknown"


def _first_line(message: str) -> str:
    """``SIP/2.0 503 Service Unavailable`` -> ``503 Service Unavailable``; ``BYE sip:...`` -> ``BYE``."""
    line = message.strip().splitlines()[0].strip() if message.strip() else ""
    if line.startswith("SIP/2.0 "):
        return line.removeprefix("SIP/2.0 ").strip()
    return line.split(" ", 1)[0] if line else "-"


def classify(event: str) -> Failure:
    """One SIPp error-log event (as ``lab.sipp.parse_error_log`` returns it) -> its :class:`Failure`."""
    if match := _UNEXPECTED.search(event):
        expected = match["expected"]
        received = _first_line(match["received"]) if match["received"] is not None else match["response"]
        return Failure(_phase(expected), "asterisk", expected, received)
    if match := _DEAD_CALL.search(event):
        return Failure("after the end", "asterisk", f"nothing ({match['state']})", _first_line(match["received"]))
    if match := _TIMEOUT.search(event):
        expected = match["expected"]
        return Failure(_phase(expected), "asterisk", expected, "-")
    if _RETRANS.search(event):
        return Failure("unknown", "asterisk", "a reply to a retransmitted message", "-")
    if _SEND_FAILED.search(event):
        return Failure("unknown", "sipp", "to send", "-")
    return Failure("unknown", "unknown", "?", event.strip().splitlines()[0][:80] if event.strip() else "-")


def classify_failures(events: Iterable[str]) -> Counter[Failure]:
    """How many calls failed each way (benign ``ontimeout`` notices are already dropped by
    ``parse_error_log``)."""
    return Counter(classify(e) for e in events)


# ------------------------------------------------------------------------------------ ratios


@dataclass(frozen=True)
class RatioSummary:
    """ivr / bare, one ratio per interleaved round."""

    ratios: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def low(self) -> float:
        return min(self.ratios)

    @property
    def high(self) -> float:
        return max(self.ratios)

    @property
    def spread(self) -> float:
        """Highest minus lowest ratio: a difference smaller than this is not resolved."""
        return self.high - self.low

    def meets(self, median_at_least: float, none_below: float) -> bool:
        return self.median >= median_at_least and self.low >= none_below

    def __str__(self) -> str:
        each = ", ".join(f"{r:.2f}" for r in self.ratios)
        return (
            f"median {self.median:.2f}, range {self.low:.2f}-{self.high:.2f} (spread {self.spread:.2f}; rounds {each})"
        )


@dataclass(frozen=True)
class Spread:
    """One measure over interleaved runs of the same step (CPU per call at 80% of the ceiling).

    Why more than one run: a single 10 s step's CPU per call moved by up to 8% between two runs of
    the same code on this machine, as much as the changes it was meant to show (bench/README.md)."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("no run to summarise")

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def __str__(self) -> str:
        each = ", ".join(f"{v:.2f}" for v in self.values)
        return f"median {self.median:.2f}, range {min(self.values):.2f}-{max(self.values):.2f} (runs {each})"


def ratio_summary(pairs: Sequence[tuple[float, float]]) -> RatioSummary:
    """``pairs``: (numerator, denominator) ceilings of one round each, e.g. (ivr, bare)."""
    ratios = tuple(a / b for a, b in pairs if b > 0)
    if not ratios:
        raise ValueError("no round with a non-zero denominator")
    return RatioSummary(ratios)


# ------------------------------------------------------------------------------------ histograms

Buckets = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last


def histograms(text: str) -> dict[str, Buckets]:
    """Every histogram in a ``/metrics`` text: name -> cumulative buckets (unlabelled ones only)."""
    found: dict[str, Buckets] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        buckets = [
            (float(s.labels["le"]), s.value)
            for s in family.samples
            if s.name.endswith("_bucket") and set(s.labels) == {"le"}
        ]
        if buckets:
            found[family.name] = tuple(sorted(buckets))
    return found


def histogram_delta(before: Buckets | None, after: Buckets) -> Buckets:
    """What was observed between two scrapes of one histogram (its buckets never shrink)."""
    if before is None:
        return after
    earlier: Mapping[float, float] = dict(before)
    return tuple((bound, count - earlier.get(bound, 0.0)) for bound, count in after)


def quantile(buckets: Buckets, q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile (an upper estimate, as honest as
    the buckets allow); ``inf`` when it lies above every bound, None when nothing was observed."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= rank:
            return bound
    return buckets[-1][0]


def count(buckets: Buckets) -> int:
    return int(buckets[-1][1]) if buckets else 0
