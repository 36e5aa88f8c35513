"""Idle HTTP connections cannot starve calls: a real ``ivr serve`` whose descriptor limit is low.

The controller runs as a child process with ``RLIMIT_NOFILE`` lowered to 256 (the way an
attacker's thousands of idle sockets would meet a normal limit, in a count a test can open on
loopback). More idle HTTP connections than descriptors are opened; a FastAGI session must still
be answered, the idle connections must be closed after the header timeout, and the web side must
say once that its cap was reached.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.web.connections import http_connection_cap

ROOT = Path(__file__).resolve().parents[3]
NOFILE = 256
IDLE_CONNECTIONS = 320  # more than the child's whole descriptor limit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


class Controller:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, agi_port: int, web_port: int) -> None:
        self.process = process
        self.log = log
        self.agi_port = agi_port
        self.web_port = web_port


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[Controller]:
    agi_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "IVR_DATA_DIR": str(tmp_path),
        "IVR_FLOWS_DIR": str(ROOT / "dialplans"),
        "IVR_AGI_PORT": str(agi_port),
        "IVR_WEB_PORT": str(web_port),
        "IVR_SPEECH_ENGINE": "off",
        "IVR_FLOWS_WATCH_INTERVAL": "60",
        "IVR_WEB_HEADER_TIMEOUT": "2",
        "IVR_WEB_RESERVED_DESCRIPTORS": "128",
    }
    log = tmp_path / "controller.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ivr.cli", "serve"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_descriptors,
        )
    try:
        deadline = time.monotonic() + 30
        while not _accepts(agi_port):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "controller did not start:\n" + log.read_text()
            time.sleep(0.05)
        yield Controller(process, log, agi_port, web_port)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def agi_session(port: int) -> bytes:
    """A FastAGI session on a route nobody serves: the server must answer with the fallback."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"agi_network: yes\nagi_network_script: no-such-route\nagi_request: agi://x/no-such-route\n\n")
        sock.settimeout(5)
        answer = sock.recv(4096)
        sock.sendall(b"200 result=1\n")
        return answer


def test_idle_http_connections_leave_calls_served_and_are_closed_after_the_header_timeout(
    controller: Controller,
) -> None:
    idle: list[socket.socket] = []
    opened = time.monotonic()
    try:
        for _ in range(IDLE_CONNECTIONS):
            idle.append(socket.create_connection(("127.0.0.1", controller.web_port), timeout=5))
        time.sleep(0.5)  # let the server accept what it will

        # a call arriving now is answered (the fallback for an unknown route, at once)
        assert agi_session(controller.agi_port).startswith(b'SET VARIABLE IVR_ACTION "fallback"')

        # the idle ones are closed after the 2 s header timeout (or refused at once, over the cap)
        deadline = time.monotonic() + 6
        closed = 0
        first_closed_after = 0.0
        for sock in idle:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                while sock.recv(4096):
                    pass
                closed += 1
                first_closed_after = first_closed_after or time.monotonic() - opened
            except TimeoutError:
                break
            except OSError:  # reset: closed too
                closed += 1
        assert closed == IDLE_CONNECTIONS
        assert 1.5 < first_closed_after < 5  # the first ones were accepted, then timed out
    finally:
        for sock in idle:
            sock.close()

    # the web side works again, and calls still do
    with socket.create_connection(("127.0.0.1", controller.web_port), timeout=5) as sock:
        sock.sendall(b"GET /api/customers/x/timeline HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 503")  # the API is off: no token configured
    assert agi_session(controller.agi_port).startswith(b'SET VARIABLE IVR_ACTION "fallback"')
    log = controller.log.read_text()
    assert "HTTP connection cap reached" in log
    assert "Traceback" not in log


def test_the_cap_stays_below_the_descriptor_limit() -> None:
    assert http_connection_cap(1000, 256, soft_limit=1024) == 768
    assert http_connection_cap(500, 256, soft_limit=1024) == 500
    assert http_connection_cap(1000, 256, soft_limit=200) == 0
    assert http_connection_cap(1000, 256, soft_limit=resource.RLIM_INFINITY) == 1000
