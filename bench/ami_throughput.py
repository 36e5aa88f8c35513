"""AMI event throughput: our client (typed parse + ordered handler queue) vs a bare panoramisk listener.

    .venv/bin/python bench/ami_throughput.py [--events 20000]

One lab Asterisk 22. A member (PJSIP/agent1004) is added to queue "billing"; a producer connection
pipelines ``--events`` QueuePause actions (paused true/false alternately), so Asterisk emits a real
``QueueMemberPause`` event for each: the same event type the ACD consumes, at the rate Asterisk
can produce them. Two listeners are connected at the same time, side by side:

* ``bare``: panoramisk ``Manager`` with ``register_event('QueueMemberPause', count)``;
* ``ivr``: ``ivr.ami.client.AmiClient`` with a handler counting typed ``QueueMember`` events.

For each it prints events received, the rate between its first and last event, and how long after
the bare listener it finished (the lag: how far behind it fell). Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path

from panoramisk import Manager

from ivr.ami import events as ev
from ivr.ami.client import AmiClient, AmiError
from lab.asterisk import AsteriskLab
from lab.lock import lab_session_lock

INTERFACE = "PJSIP/agent1004"
RESULTS = Path(__file__).resolve().parent / "results"


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.first = 0.0
        self.last = 0.0

    def hit(self) -> None:
        now = time.perf_counter()
        if not self.n:
            self.first = now
        self.n += 1
        self.last = now

    def rate(self) -> float:
        return (self.n - 1) / (self.last - self.first) if self.n > 1 and self.last > self.first else 0.0


async def produce(secret: str, count: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", 5038)
    writer.write(f"Action: Login\r\nUsername: ivr\r\nSecret: {secret}\r\nEvents: off\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    batch = []
    for i in range(count):
        paused = "true" if i % 2 == 0 else "false"
        batch.append(f"Action: QueuePause\r\nActionID: b{i}\r\nInterface: {INTERFACE}\r\nPaused: {paused}\r\n\r\n")
        if len(batch) == 200:
            writer.write("".join(batch).encode())
            batch = []
            await writer.drain()
            await reader.read(1 << 20)  # keep the response stream drained
    writer.write("".join(batch).encode())
    await writer.drain()
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed


async def run(count: int) -> dict[str, object]:
    lab = AsteriskLab()
    bare_count, ivr_count = Counter(), Counter()
    bare = Manager(host="127.0.0.1", port=5038, username="ivr", secret=lab.ami_secret, ping_delay=60, events="on")
    bare.register_event("QueueMemberPause", lambda _m, _e: bare_count.hit())
    ours = AmiClient(username="ivr", secret=lab.ami_secret, events=True)

    async def on_event(event: ev.AmiEvent) -> None:
        if isinstance(event, ev.QueueMember) and event.kind == "pause":
            ivr_count.hit()

    ours.on_event(on_event)
    await ours.connect()
    bare.loop = asyncio.get_running_loop()
    await bare.connect()
    await asyncio.sleep(0.5)
    with contextlib.suppress(AmiError):  # left over from an interrupted run
        await ours.action({"Action": "QueueRemove", "Queue": "billing", "Interface": INTERFACE})
    await ours.action({"Action": "QueueAdd", "Queue": "billing", "Interface": INTERFACE, "Paused": "true"})
    await asyncio.sleep(0.3)
    bare_count.n = ivr_count.n = 0
    produce_s = await produce(lab.ami_secret, count)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (bare_count.n < count or ivr_count.n < count):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    peak_lag = ours.lag
    with_lag = ivr_count.last - bare_count.last
    await ours.action({"Action": "QueueRemove", "Queue": "billing", "Interface": INTERFACE})
    ours.close()
    await ours.stop()
    bare.close()
    return {
        "events_requested": count,
        "producer_s": round(produce_s, 3),
        "bare": {"events": bare_count.n, "per_s": round(bare_count.rate())},
        "ivr": {"events": ivr_count.n, "per_s": round(ivr_count.rate()), "queue_left": peak_lag},
        "ivr_finished_after_bare_ms": round(with_lag * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    with lab_session_lock():
        lab = AsteriskLab()
        lab.provision()
        lab.install_config()
        started = not lab.is_running()
        if started:
            lab.start()
        try:
            result = asyncio.run(run(args.events))
        finally:
            if started:
                lab.stop()
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ami_throughput-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
