"""A throwaway Redis for tests and benchmarks: ``redis-server`` on a free loopback port, no disk.

Why not the machine's Redis: tests must not share state with (or depend on) a service someone
else runs; each session gets its own empty server, bound to 127.0.0.1, with persistence off, and
stopped (and awaited) at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from lab.errors import LabError


class RedisServer:
    """One ``redis-server`` child. ``kill()`` and ``start()`` simulate a crash and a restart on the
    same port (with ``--save ''`` it comes back empty, as a Redis without persistence would)."""

    def __init__(self, port: int, argv: list[str], workdir: Path) -> None:
        self.port = port
        self.argv = argv
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again) and wait until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            raise LabError(f"redis-server on {self.port} is already running")
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _pong(self.port):
            if self.process.poll() is not None:
                tail = (self.workdir / "redis.log").read_text(errors="replace")[-800:]
                raise LabError(f"redis-server exited: {tail}")
            if time.monotonic() > deadline:
                raise LabError(f"redis-server not answering on {self.port} after {timeout}s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash would (no shutdown, no save); returns once the process is gone."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def available() -> bool:
    return shutil.which("redis-server") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def throwaway_redis(timeout: float = 10.0) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LabError("redis-server is not installed: run scripts/bootstrap (apt package 'redis-server')")
    workdir = Path(tempfile.mkdtemp(prefix="ivr-redis-"))
    port = _free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(workdir), "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"]
    server = RedisServer(port, argv, workdir)
    try:
        server.start(timeout)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
