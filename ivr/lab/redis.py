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
from dataclasses import dataclass
from pathlib import Path

from ivr.errors import LabError


@dataclass(frozen=True)
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


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
    log = (workdir / "redis.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        deadline = time.monotonic() + timeout
        while not _pong(port):
            if process.poll() is not None:
                raise LabError(f"redis-server exited: {(workdir / 'redis.log').read_text(errors='replace')[-800:]}")
            if time.monotonic() > deadline:
                raise LabError(f"redis-server not answering on {port} after {timeout}s")
            time.sleep(0.05)
        yield RedisServer(port, process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
