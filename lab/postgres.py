"""A throwaway PostgreSQL server for tests and benchmarks: its own cluster in a temp folder.

Why not the system's cluster: tests must not depend on (or damage) a database someone else runs,
and two test sessions must not share one. Each ``PostgresServer`` runs ``initdb`` into a fresh
temporary directory, starts ``postgres`` on a free loopback port with its Unix socket in the same
directory, and removes everything on ``stop()``.

Gotchas this handles:

* ``initdb`` and ``postgres`` refuse to run as root. As root we run them as the ``postgres``
  system user (``subprocess``'s ``user=``), with the data directory chowned to it.
* Debian keeps the server binaries off ``PATH`` (``/usr/lib/postgresql/<major>/bin``).
* Even a throwaway server gets a password: a random one, SCRAM auth, loopback only, so another
  local user cannot connect to it during the test run.
* Durability is traded for speed (``fsync=off``, ``synchronous_commit=off``): the data is
  deleted at the end anyway. Read latency, which the profile benchmark measures, is unaffected.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lab.errors import LabError

SERVER_USER = "postgres"
SUPERUSER = "ivr"
DEFAULT_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl: $IVR_PG_BINDIR, Debian's newest major, then PATH."""
    if os.environ.get("IVR_PG_BINDIR"):
        return Path(os.environ["IVR_PG_BINDIR"])
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = sorted(
            (p for p in debian.iterdir() if (p / "bin" / "initdb").exists()),
            key=lambda p: int(p.name) if p.name.isdigit() else 0,
        )
        if majors:
            return majors[-1] / "bin"
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise LabError("PostgreSQL server binaries not found: install the 'postgresql' package (scripts/bootstrap)")


def available() -> bool:
    try:
        find_bindir()
    except LabError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """``with PostgresServer() as pg: pg.url("ivr")``; or ``start()`` / ``stop()``."""

    def __init__(self, *, settings: Mapping[str, str] | None = None, port: int | None = None) -> None:
        self.bindir = find_bindir()
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(16)
        self.root: Path | None = None
        self._as_user: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ lifecycle
    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "server.log"

    def start(self, timeout: float = 30) -> PostgresServer:
        self.root = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres system user
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise LabError(f"running as root needs the {SERVER_USER!r} system user (package postgresql)") from None
            self._as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o700)
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as_user:
            os.chown(pwfile, self._as_user["user"], self._as_user["group"])
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        self._pg_start(timeout)
        return self

    def _pg_start(self, timeout: float) -> None:
        assert self.root is not None, "server not initialised"
        options = f"-k {self.root} -p {self.port} -h 127.0.0.1 " + " ".join(
            f"-c {k}={v}" for k, v in self.settings.items()
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
        )

    def halt(self) -> None:
        """Stop the server but keep its data: an outage that ``resume`` ends (same port, same
        databases, same password). ``immediate``: clients see their connections drop at once."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    def resume(self, timeout: float = 30) -> None:
        """Start the server ``halt`` stopped (crash recovery runs first, as after a real outage)."""
        self._pg_start(timeout)

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ databases
    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        """SQLAlchemy URL of one database on this server (``driver``: asyncpg, or '' for the default)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql (used for CREATE/DROP DATABASE, which cannot run in a transaction)."""
        env = {**os.environ, "PGPASSWORD": self.password}
        proc = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise LabError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (optionally copied from ``template``) and return its asyncpg URL."""
        if not name.replace("_", "").isalnum():
            raise LabError(f"bad database name {name!r}")
        suffix = f" TEMPLATE {template}" if template else ""
        self.psql(f"CREATE DATABASE {name}{suffix}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    # ------------------------------------------------------------------------------ internals
    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        proc = subprocess.run(
            [str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            **self._as_user,
        )
        if check and proc.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError, AssertionError):
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
            raise LabError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n{tail}")


@contextlib.contextmanager
def throwaway_postgres(settings: Mapping[str, str] | None = None) -> Iterator[PostgresServer]:
    server = PostgresServer(settings=settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()
