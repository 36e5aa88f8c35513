"""The controller as a child process (``ivr serve``), the way a user runs it, for tests and benches.

Why a real process instead of an in-process App: tests must be able to kill it mid-call (the
dialplan fallback is only proven if the controller really disappears), and a benchmark must see
the controller's own CPU time apart from the test driver's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.sipp import CallerScript, SippResult, run_caller_async

if TYPE_CHECKING:
    from lab.asterisk import AsteriskLab


class ControllerProcess:
    def __init__(
        self,
        *,
        flows_dir: Path,
        data_dir: Path,
        agi_port: int = 4573,
        env: dict[str, str] | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.flows_dir = flows_dir
        self.data_dir = data_dir
        self.agi_port = agi_port
        self.log_path = data_dir / "controller.log"
        self.db_path = data_dir / "ivr.sqlite3"
        self._env = {
            **os.environ,
            "IVR_FLOWS_DIR": str(flows_dir),
            "IVR_DATA_DIR": str(data_dir),
            "IVR_AGI_PORT": str(agi_port),
            "IVR_LOG_LEVEL": log_level,
            "IVR_FLOWS_WATCH_INTERVAL": "0.5",
            "IVR_WEB_PORT": "0",  # the HTTP API on any free port: never collide with a real 8080
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._accepts():
            raise LabError(f"port {self.agi_port} is already taken (a stale 'ivr serve'?): calls would not reach us")
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ivr.cli", "serve"], env=self._env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LabError(f"controller exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._accepts():  # a bare connect+close, as a TCP health check does: costs the server nothing
                return
            time.sleep(0.05)
        # Stop it before giving up: a server left running would hold the AGI port, and every later
        # test would find the port taken (or worse, its calls served by this stray process).
        self.stop()
        raise LabError(f"controller not ready after {timeout}s:\n{self.log_tail()}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.agi_port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM (graceful: calls go to the fallback, journeys are flushed), then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            # Said aloud: a controller that does not stop is a bug (its log names the tasks it
            # waited for: ivr.shutdown), and a silent SIGKILL in a fixture hid it for a session.
            print(f"controller did not stop {timeout:g} s after SIGTERM; killed:\n{self.log_tail()}", file=sys.stderr)
            self.process.kill()
            return self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL: the controller vanishes mid-call, as in a crash."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def reload(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGHUP)

    def cpu_seconds(self) -> float:
        """User+system CPU time of the running controller (from /proc)."""
        if not self.process:
            return 0.0
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_for_log(self, text: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path.exists() and text in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise LabError(f"{text!r} not in the controller log after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def journeys(self) -> list[dict[str, Any]]:
        if not self.db_path.exists():
            return []
        with sqlite3.connect(self.db_path, timeout=10) as db:
            try:
                rows = db.execute("SELECT data FROM journeys ORDER BY started_at").fetchall()
            except sqlite3.OperationalError:
                return []
        return [json.loads(r[0]) for r in rows]

    def interactions(self, journey_id: str) -> list[dict[str, Any]]:
        with sqlite3.connect(self.db_path, timeout=10) as db:
            rows = db.execute(
                "SELECT kind, step, data FROM interactions WHERE journey_id = ? ORDER BY id", (journey_id,)
            ).fetchall()
        return [{"kind": k, "step": s, "data": json.loads(d)} for k, s, d in rows]

    def wait_for_journey(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for journey in self.journeys():
                if predicate(journey):
                    return journey
            time.sleep(0.1)
        raise LabError(f"no matching journey after {timeout}s; have {self.journeys()}\n{self.log_tail()}")


class ControllerSlot:
    """At most one ``ivr serve`` on the lab's AGI port, kept running between tests that can share it.

    Why: a controller's start (the migrations, the speech model's load) cost 6-20 s per test, and
    tests that only place calls and read back their own caller's journey need no fresh one. Asterisk
    dials one AGI port, so a test that needs a controller of its own (killed mid-call, other
    settings, none at all) empties the slot first with ``release()``; the next ``get()`` starts a
    new shared one.
    """

    def __init__(self, start: Callable[[], ControllerProcess]) -> None:
        self._start = start
        self._current: ControllerProcess | None = None

    def get(self) -> ControllerProcess:
        """The shared controller, started if there is none or the last one is gone."""
        current = self._current
        if current is None or current.process is None or current.process.poll() is not None:
            self.release()
            self._current = current = self._start()
        return current

    def release(self) -> None:
        """Stop the shared controller, if one runs: the AGI port is free for someone else's."""
        current, self._current = self._current, None
        if current is not None:
            current.stop()


async def call_until(
    lab: AsteriskLab, proc: ControllerProcess, script: CallerScript, until: Callable[[dict[str, Any]], bool]
) -> SippResult:
    """Place ``script``'s call and hang it up (as the caller's BYE would) as soon as the caller's
    journey on ``proc`` satisfies ``until``; returns SIPp's result, unchecked.

    Why: a scripted caller hangs up at a time fixed before the call starts, with margins for a busy
    machine, so a test whose check is settled once the journey reached a step would wait out those
    margins on every run. When ``until`` never holds, nothing is hung up: the call ends at the
    script's own bound and the test's assertions judge the journey as they would have.
    """
    call = asyncio.create_task(run_caller_async(script))
    while not call.done():
        journeys = await asyncio.to_thread(proc.journeys)
        if any(j["caller"] == script.caller_id and until(j) for j in journeys):
            await asyncio.to_thread(lab.hang_up_caller, script.caller_id)
            break
        await asyncio.wait({call}, timeout=0.1)
    return await call
