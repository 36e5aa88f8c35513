"""What operators measure: one Prometheus registry per process, rendered for ``/metrics``.

Two kinds of figures, chosen by what they cost a call:

* **Readings** (gauges and counters the services already keep: active calls, calls and failed
  calls, the journey writer's backlog, AMI state and events, the pub/sub outbox) are read when
  Prometheus scrapes, through a callable registered here by the composition root. A call pays
  nothing for them, and a scrape costs one attribute read each, however many calls are up.
* **Histograms and the HTTP counter** (an AGI command's round trip, a journey batch's commit, a
  speech decode, a response's status) are observed where they happen. The histograms are
  :class:`LoopHistogram`, not prometheus_client's ``Histogram``: every observation happens on the
  event loop's thread, so it needs no lock, and one bisect plus two additions costs a fifth of
  ``Histogram.observe`` (bench/metrics.py: 0.9 against 4.3 us on a loaded machine), which is
  paid five or more times per call.

No label carries personal data or an unbounded value: the only label is the HTTP status code,
and codes outside 100-599 are counted as ``other``. Phone numbers, names, journey ids and URL
paths never reach a metric.

One registry per ``Telemetry`` (not prometheus_client's global one), so two controllers in one
test process, or a test and a bench, never add into each other's figures.
"""

from __future__ import annotations

import asyncio
import logging
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ivr.aio import cancel_and_wait

log = logging.getLogger(__name__)

#: What ``/metrics`` answers with (the Prometheus text format, version 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: An AGI command answers in well under a millisecond (SET VARIABLE on loopback) or after a
#: prompt (STREAM FILE, GET DATA: seconds): buckets that separate a slow Asterisk from a long prompt.
COMMAND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: A journey batch commits in milliseconds; seconds mean the database is struggling.
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: What a caller waits after they stop speaking, queueing included (bench/README.md: speech).
DECODE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 15)
#: Work on the call path that should take well under a millisecond on a healthy node (a variable
#: set over AGI, a step of the flow, the loop's own lag): fine below 5 ms, where the targets are,
#: coarse above, where only "how bad" matters.
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@dataclass(frozen=True)
class Reading:
    """A figure a service keeps itself, read at scrape time."""

    name: str
    documentation: str
    kind: Literal["gauge", "counter"]
    read: Callable[[], float]


class LoopHistogram(Collector):
    """A Prometheus histogram for code that runs on the event loop's thread only (no lock).

    ``observe`` finds the value's bucket by bisection (``le`` is inclusive: a value equal to a
    bound counts in that bucket, as in Prometheus) and adds to that bucket and to the sum; the
    cumulative counts are built when the registry is collected. Calling ``observe`` from another
    thread could lose a count, never corrupt the text.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        bounds = tuple(float(b) for b in buckets)
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"histogram {name}: buckets must be increasing, got {buckets}")
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def collect(self) -> Iterator[Metric]:
        buckets: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            buckets.append((_le(bound), total))
        buckets.append(("+Inf", total + self.counts[-1]))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=self.sum)


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it (``0.005``, ``1.0``)."""
    return repr(float(bound))


class _Readings(Collector):
    """Turns the registered readings into metric families when the registry is collected."""

    def __init__(self, readings: list[Reading]) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        for reading in self._readings:
            value = float(reading.read())
            if reading.kind == "counter":
                yield CounterMetricFamily(reading.name, reading.documentation, value=value)
            else:
                yield GaugeMetricFamily(reading.name, reading.documentation, value=value)


class Telemetry:
    """The registry, the observers the hot paths call, and the readings of the services."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._readings: list[Reading] = []
        self.registry.register(_Readings(self._readings))
        if process:  # CPU seconds, resident memory, open descriptors: read from /proc at scrape
            ProcessCollector(registry=self.registry)
        self.agi_command_seconds = LoopHistogram(
            "ivr_agi_command_seconds",
            "Round trip of one AGI command: sent to Asterisk until its reply (prompts included).",
            COMMAND_BUCKETS,
        )
        self.journey_batch_seconds = LoopHistogram(
            "ivr_journey_batch_seconds",
            "Time the journey writer took to commit one batch (failed batches included).",
            BATCH_BUCKETS,
        )
        self.speech_decode_seconds = LoopHistogram(
            "ivr_speech_decode_seconds",
            "What a caller waited for their words to be decoded after they stopped speaking.",
            DECODE_BUCKETS,
        )
        self.agi_control_seconds = LoopHistogram(
            "ivr_agi_control_command_seconds",
            "Round trip of AGI commands that neither play nor listen (SET/GET VARIABLE, ANSWER ...): "
            "Asterisk's and this process's own latency, no prompt in it.",
            FAST_BUCKETS,
        )
        self.agi_first_command_seconds = LoopHistogram(
            "ivr_agi_first_command_seconds",
            "From a call's AGI connection to its first command: the silence the caller hears while the "
            "controller reads the environment, picks the flow and looks the caller up.",
            FAST_BUCKETS,
        )
        self.loop_lag_seconds = LoopHistogram(
            "ivr_event_loop_lag_seconds",
            "How late the event loop woke a probe that sleeps a fixed interval: every call on this "
            "process waits that long for its next command.",
            FAST_BUCKETS,
        )
        self.caller_lookup_seconds = LoopHistogram(
            "ivr_caller_lookup_seconds",
            "Caller id to profile before the first prompt (creating a new caller included; bounded "
            "by customers.lookup_timeout).",
            FAST_BUCKETS,
        )
        self.customer_create_seconds = LoopHistogram(
            "ivr_customer_create_seconds",
            "Creating the customer of a number calling for the first time.",
            FAST_BUCKETS,
        )
        self.flow_seconds = LoopHistogram(
            "ivr_flow_step_seconds",
            "Time in the flow machine for one step of a call (deciding the next commands, no I/O).",
            FAST_BUCKETS,
        )
        for histogram in (
            self.agi_command_seconds,
            self.agi_control_seconds,
            self.agi_first_command_seconds,
            self.loop_lag_seconds,
            self.caller_lookup_seconds,
            self.customer_create_seconds,
            self.flow_seconds,
            self.journey_batch_seconds,
            self.speech_decode_seconds,
        ):
            self.registry.register(histogram)
        self.http_requests = Counter(
            "ivr_http_requests",
            "HTTP responses by status code (every route: API, desktop, chat, health).",
            ["code"],
            registry=self.registry,
        )

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A value that goes up and down (active calls), read at each scrape."""
        self._readings.append(Reading(name, documentation, "gauge", read))

    def counter(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A total that only grows while the process lives, read at each scrape (``name`` without
        ``_total``: the text format adds it)."""
        self._readings.append(Reading(name, documentation, "counter", read))

    def http_response(self, status: int) -> None:
        """Count one response; the label set stays bounded whatever a handler sets."""
        code = str(status) if 100 <= status <= 599 else "other"
        self.http_requests.labels(code=code).inc()

    def render(self) -> bytes:
        """The whole registry in the Prometheus text format."""
        return generate_latest(self.registry)


class LoopLagProbe:
    """A task that sleeps ``interval`` over and over and tells ``observe`` how late it woke.

    Why: every call on the node shares one event loop, so anything that holds it (a long
    callback, SQL compiled on the loop, a thread holding the GIL) delays every call's next AGI
    command by the same amount, while CPU figures look fine. The probe costs one timer wake-up
    per ``interval``. A lag over ``warn_after`` is logged (at most once per ``warn_every``
    seconds, so an overloaded node does not also flood its log). ``slow_callback``: when set
    (``log.level`` DEBUG), asyncio's debug mode names each callback that ran longer than that.
    """

    def __init__(
        self,
        observe: Callable[[float], None],
        *,
        interval: float = 0.05,
        warn_after: float = 0.1,
        warn_every: float = 10.0,
        slow_callback: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._observe = observe
        self.interval = interval
        self.warn_after = warn_after
        self.warn_every = warn_every
        self.slow_callback = slow_callback
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._warned_at = -float("inf")
        #: the longest lag seen since start (seconds)
        self.worst = 0.0

    def lag(self, started: float, woke: float) -> float:
        """How much later than asked a sleep started at ``started`` ended at ``woke`` (>= 0; asyncio
        may wake a timer up to its clock resolution early)."""
        return max(0.0, woke - started - self.interval)

    def note(self, lag: float, now: float) -> bool:
        """Record one lag; True when it is worth a warning now."""
        self._observe(lag)
        self.worst = max(self.worst, lag)
        if lag > self.warn_after and now - self._warned_at >= self.warn_every:
            self._warned_at = now
            return True
        return False

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("LoopLagProbe.start() called twice")
        if self.slow_callback is not None:
            loop = asyncio.get_running_loop()
            loop.slow_callback_duration = self.slow_callback
            loop.set_debug(True)
        self._task = asyncio.create_task(self._run(), name="loop-lag-probe")

    async def stop(self) -> None:
        if self._task is None:
            return
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        clock = self._clock
        while True:
            started = clock()
            await asyncio.sleep(self.interval)
            woke = clock()
            lag = self.lag(started, woke)
            if self.note(lag, woke):
                log.warning("event loop was %.0f ms late: every call on this node waited as long", lag * 1000)
