"""A real Kannel SMS gateway for tests and benchmarks: bearerbox, smsbox and the fake SMSC.

Start-up order matters, and readiness is observable:

1. ``bearerbox`` (the core): listens for boxes on ``smsbox-port``, serves its status page on
   ``admin-port`` and runs the ``fake`` SMSC driver, which *listens* on its own port for a
   fake-SMSC client.
2. ``smsbox``: connects to bearerbox, serves ``/cgi-bin/sendsms`` (outgoing messages, MT) and
   calls our ``get-url`` for every incoming message (MO) and ``dlr-url`` for delivery reports.
3. ``/usr/lib/kannel/test/fakesmsc`` in interactive mode: connects to the fake SMSC port; every
   line written to its stdin is an MO message (``sender receiver text words``); every MT message
   bearerbox routes to it is logged as ``Got message N: <sender receiver text words>``.

The gateway is ready when the status page shows smsbox *on-line* and the SMSC *online*: a sendsms
before that is accepted but queued, so a test would time the queue, not the gateway.

Everything listens on 127.0.0.1 on free ports; passwords are random per run; the boxes write
lowercase ``-p`` pid files into the run directory; ``stop()`` stops in the reverse order.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import LabError

BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
_GOT = re.compile(r"Got message \d+: <(?P<line>.*)>")


def available() -> bool:
    return all(Path(p).exists() for p in (BEARERBOX, SMSBOX, FAKESMSC))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class FakeSms:
    """One MT message as the fake SMSC received it (concatenated parts joined again)."""

    sender: str
    receiver: str
    text: str
    at: float
    #: (reference, total parts, this part) from a concatenation UDH; None for a single message
    part: tuple[int, int, int] | None = None


def _concat(udh: bytes) -> tuple[int, int, int] | None:
    """The 8-bit concatenation element of a UDH (length, 00 03 ref total seq)."""
    i = 1
    while i + 1 < len(udh):
        iei, length = udh[i], udh[i + 1]
        if iei == 0 and length == 3 and i + 4 < len(udh):
            return udh[i + 2], udh[i + 3], udh[i + 4]
        i += 2 + length
    return None


def parse_fake_line(line: str, at: float = 0.0) -> FakeSms | None:
    """One line the fake SMSC sent to its client -> FakeSms; None when it is not a message line
    (a message text with a newline arrives as several lines: the rest are continuations).

    ``sender receiver text words``, ``... data <urlencoded>``, ``... udh <udh> [data] <urlencoded>``.
    """
    parts = line.split(" ", 3)
    if len(parts) < 4 or parts[2] not in ("text", "data", "udh"):
        return None
    sender, receiver, kind, rest = parts
    if kind == "text":
        return FakeSms(sender, receiver, rest, at)
    if kind == "data":
        return FakeSms(sender, receiver, urllib.parse.unquote_plus(rest), at)
    udh_text, _, body = rest.partition(" ")
    if body.startswith("data "):
        body = body[5:]
    udh = urllib.parse.unquote_to_bytes(udh_text)
    return FakeSms(sender, receiver, urllib.parse.unquote_plus(body), at, _concat(udh))


def kannel_conf(
    *,
    run_dir: Path,
    admin_port: int,
    smsbox_port: int,
    smsc_port: int,
    sendsms_port: int,
    admin_password: str,
    username: str,
    password: str,
    get_url: str,
) -> str:
    """The gateway's configuration: loopback only, random passwords, one catch-all MO service."""
    return f"""
group = core
admin-port = {admin_port}
admin-interface = 127.0.0.1
admin-password = {admin_password}
status-password = {admin_password}
admin-deny-ip = "*.*.*.*"
admin-allow-ip = "127.0.0.1"
smsbox-port = {smsbox_port}
smsbox-interface = 127.0.0.1
box-deny-ip = "*.*.*.*"
box-allow-ip = "127.0.0.1"
wdp-interface-name = ""
log-file = "{run_dir}/bearerbox.log"
log-level = 1
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {smsc_port}
our-host = 127.0.0.1
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox_port}
sendsms-port = {sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{run_dir}/smsbox.log"
log-level = 1
mo-recode = true

group = sendsms-user
username = {username}
password = {password}
max-messages = 10
concatenation = true
user-allow-ip = "127.0.0.1"

group = sms-service
keyword = default
catch-all = true
get-url = "{get_url}"
max-messages = 0
omit-empty = true
"""


@dataclass
class KannelLab:
    """bearerbox + smsbox + fakesmsc as child processes. ``get_url`` is the MO callback
    (Kannel escapes: %p sender, %P receiver, %a the text, %I message id)."""

    get_url: str = "http://127.0.0.1:9/none?from=%p&to=%P&text=%a"
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ivr-kannel-")))
    username: str = "ivr"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    admin_port: int = field(default_factory=free_port)
    smsbox_port: int = field(default_factory=free_port)
    smsc_port: int = field(default_factory=free_port)
    sendsms_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._fake: subprocess.Popen[bytes] | None = None
        self._received: list[FakeSms] = []
        self._parts: dict[tuple[str, str, int], dict[int, FakeSms]] = {}
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    @property
    def conf_path(self) -> Path:
        return self.run_dir / "kannel.conf"

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def status(self) -> str:
        url = f"http://127.0.0.1:{self.admin_port}/status.txt?password={urllib.parse.quote(self.admin_password)}"
        with urllib.request.urlopen(url, timeout=2) as reply:
            return str(reply.read().decode("utf-8", "replace"))

    def ready(self) -> bool:
        """smsbox connected (``on-line``) and the fake SMSC client connected (``online``)."""
        try:
            text = self.status()
        except OSError:
            return False
        smsbox = re.search(r"smsbox:.*\(on-line", text) is not None
        smsc = re.search(r"fake\[fake\].*\(online", text) is not None or re.search(r"FAKE:\d+.*\(online", text)
        return bool(smsbox and smsc)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        out = (self.run_dir / f"{name}.out").open("ab")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.run_dir)
        out.close()
        self._procs[name] = proc
        return proc

    def _wait_port(self, port: int, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise LabError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
            time.sleep(0.05)
        raise LabError(f"{name} does not listen on {port} after {timeout}s:\n{self.log_tail(name)}")

    def start(self, timeout: float = 20) -> None:
        if not available():
            raise LabError("Kannel is not installed: run scripts/bootstrap (packages kannel, kannel-extras)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(
            kannel_conf(
                run_dir=self.run_dir,
                admin_port=self.admin_port,
                smsbox_port=self.smsbox_port,
                smsc_port=self.smsc_port,
                sendsms_port=self.sendsms_port,
                admin_password=self.admin_password,
                username=self.username,
                password=self.password,
                get_url=self.get_url,
            )
        )
        os.chmod(self.conf_path, 0o600)
        try:
            self._spawn("bearerbox", [BEARERBOX, "-p", str(self.run_dir / "bearerbox.pid"), str(self.conf_path)])
            self._wait_port(self.smsbox_port, "bearerbox", timeout)
            self._wait_port(self.smsc_port, "bearerbox", timeout)
            self._spawn("smsbox", [SMSBOX, "-p", str(self.run_dir / "smsbox.pid"), str(self.conf_path)])
            self._wait_port(self.sendsms_port, "smsbox", timeout)
            self._start_fake()
            deadline = time.monotonic() + timeout
            while not self.ready():
                if time.monotonic() > deadline:
                    raise LabError(f"Kannel not ready after {timeout}s:\n{self.status_or_logs()}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def status_or_logs(self) -> str:
        try:
            return self.status()
        except OSError:
            return "\n".join(self.log_tail(n) for n in ("bearerbox", "smsbox", "fakesmsc"))

    def _start_fake(self) -> None:
        # Interactive mode (no message arguments): stdin lines are MO messages; -v 0 logs every MT
        # message it receives ("Got message N: <...>") at debug level on stderr.
        proc = subprocess.Popen(
            [FAKESMSC, "-H", "127.0.0.1", "-r", str(self.smsc_port), "-v", "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.run_dir,
        )
        self._fake = proc
        self._procs["fakesmsc"] = proc
        self._reader = threading.Thread(target=self._read_fake, args=(proc,), name="fakesmsc-reader", daemon=True)
        self._reader.start()

    def _read_fake(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with (self.run_dir / "fakesmsc.out").open("ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                match = _GOT.search(raw.decode("utf-8", "replace"))
                if match:
                    self._add(match["line"])

    def _add(self, line: str) -> None:
        """A complete message is published once: continuation lines and concatenated parts are joined."""
        sms = parse_fake_line(line, time.time())
        with self._cond:
            if sms is None:
                if self._received:  # a newline inside the previous message's text
                    last = self._received[-1]
                    self._received[-1] = FakeSms(last.sender, last.receiver, f"{last.text}\n{line}", last.at)
                    self._cond.notify_all()
                return
            if sms.part is not None:
                ref, total, _seq = sms.part
                key = (sms.sender, sms.receiver, ref)
                parts = self._parts.setdefault(key, {})
                parts[sms.part[2]] = sms
                if len(parts) < total:
                    return
                del self._parts[key]
                text = "".join(parts[i].text for i in sorted(parts))
                sms = FakeSms(sms.sender, sms.receiver, text, sms.at)
            self._received.append(sms)
            self._cond.notify_all()

    # ---------------------------------------------------------------------------- messages
    def send_mo(self, sender: str, receiver: str, text: str) -> None:
        """An incoming SMS from a handset (MO), as the SMSC would deliver it to bearerbox."""
        if self._fake is None or self._fake.stdin is None:
            raise LabError("fakesmsc is not running")
        if "\n" in text or "\r" in text:
            raise ValueError("one line per message")
        line = f"{sender} {receiver} data {urllib.parse.quote(text.encode('utf-8'))}\n"
        self._fake.stdin.write(line.encode())
        self._fake.stdin.flush()

    def received(self) -> list[FakeSms]:
        with self._cond:
            return list(self._received)

    def wait_for_sms(self, to: str | None = None, *, since: int = 0, timeout: float = 15) -> FakeSms:
        """The first MT message (after the first ``since``) to ``to``; LabError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for sms in self._received[since:]:
                    if to is None or sms.receiver.lstrip("+") == to.lstrip("+"):
                        return sms
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(f"no SMS to {to} after {timeout}s; got {self._received}\n{self.log_tail('smsbox')}")
                self._cond.wait(left)

    # ---------------------------------------------------------------------------- stop
    def log_tail(self, name: str, lines: int = 30) -> str:
        found = []
        for path in (self.run_dir / f"{name}.log", self.run_dir / f"{name}.out"):
            if path.exists():
                found += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(found)

    def stop(self) -> None:
        """Reverse order: the fake SMSC, smsbox, bearerbox; SIGTERM, then SIGKILL after 5 s."""
        for name in ("fakesmsc", "smsbox", "bearerbox"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            if name == "fakesmsc" and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            proc.send_signal(signal.SIGINT if name == "fakesmsc" else signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._reader is not None:
            self._reader.join(2)
            self._reader = None
        self._fake = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> KannelLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


@contextlib.contextmanager
def kannel(get_url: str) -> Iterator[KannelLab]:
    lab = KannelLab(get_url=get_url)
    with lab:
        yield lab
