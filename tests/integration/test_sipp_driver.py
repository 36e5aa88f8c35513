"""lab.sipp driving real sipp processes.

Two targets:

* a SIPp UAS on loopback (always available where sipp is): its SDP points the caller's media at
  a Python socket here, which decodes the RFC 4733 events, so digits, timing and who hung up are
  checked exactly, without Asterisk;
* the lab's Asterisk 22 (``lab-routes``: dtmf-echo, hold, bench-dialplan), reached as endpoint
  "lab". The digits are checked where the dialplan reports them: the ``LabDigits`` UserEvent on
  AMI (the lab's console log only carries notices and warnings).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab import sipp
from lab.asterisk import AsteriskLab
from lab.errors import LabError
from lab.require import require
from lab.sipp import CallerScript, Dtmf, run_caller, run_caller_async, run_load

pytestmark = [
    pytest.mark.integration,
    pytest.mark.requires("sipp"),
]

EVENT_NAMES = {v: k for k, v in sipp.DTMF_EVENTS.items()}


# ============================================================================ loopback UAS


@dataclass
class RtpReceiver:
    """Collects RTP on 127.0.0.1 and decodes RFC 4733 events."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    packets: list[tuple[float, tuple[str, int], bytes]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.packets.append((time.monotonic(), addr, data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def digits(self) -> str:
        """Digits as a receiver reports them: one per event (timestamp), on its end packet."""
        seen: set[int] = set()
        out = []
        for _t, _addr, data in self.packets:
            pt = data[1] & 0x7F
            ts = struct.unpack("!I", data[4:8])[0]
            if pt == sipp.PT_TELEPHONE_EVENT and data[13] & 0x80 and ts not in seen:
                seen.add(ts)
                out.append(EVENT_NAMES[data[12]])
        return "".join(out)

    def event_starts(self) -> list[float]:
        """Arrival time of the first packet of each event, relative to the first RTP packet."""
        t0 = self.packets[0][0]
        starts: dict[int, float] = {}
        for t, _addr, data in self.packets:
            if data[1] & 0x7F == sipp.PT_TELEPHONE_EVENT:
                starts.setdefault(struct.unpack("!I", data[4:8])[0], t - t0)
        return [starts[k] for k in sorted(starts)]

    def sources(self) -> set[tuple[str, int]]:
        return {addr for _t, addr, _d in self.packets}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uas_scenario(rtp_port: int, *, status: int, bye_after_ms: int | None) -> str:
    """A called party: answers (or rejects with ``status``); then waits for the caller's BYE, or
    sends its own after ``bye_after_ms``."""
    reply = f"""
SIP/2.0 {status} {"OK" if status == 200 else "Busy Here"}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]UAS[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:uas@[local_ip]:[local_port]>
"""
    if status == 200:
        reply += f"""Content-Type: application/sdp
Content-Length: [len]

v=0
o=uas 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {rtp_port} RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
"""
    else:
        reply += "Content-Length: 0\n"
    ok_to_bye = """
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
"""
    # SIPp refuses a variable that is assigned but never used: capture From only to send a BYE.
    capture = '<action><ereg regexp=".*" search_in="hdr" header="From:" assign_to="from"/></action>'
    steps = [
        f'<recv request="INVITE">{capture if status == 200 and bye_after_ms is not None else ""}</recv>',
        f'<send retrans="500"><![CDATA[{reply}]]></send>',
        '<recv request="ACK"/>',
    ]
    if status != 200:
        pass
    elif bye_after_ms is None:
        steps += ['<recv request="BYE"/>', f"<send><![CDATA[{ok_to_bye}]]></send>"]
    else:
        bye = """
BYE sip:caller@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:uas@[local_ip]:[local_port]>;tag=[pid]UAS[call_number]
To: [$from]
Call-ID: [call_id]
CSeq: 2 BYE
Content-Length: 0
"""
        steps += [
            f'<pause milliseconds="{bye_after_ms}"/>',
            f'<send retrans="500"><![CDATA[{bye}]]></send>',
            '<recv response="200"/>',
        ]
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="test uas">\n'
        + "\n".join(steps)
        + "\n</scenario>\n"
    )


@dataclass
class Uas:
    target: str
    rtp: RtpReceiver
    process: subprocess.Popen[bytes]
    workdir: Path

    def wait(self, timeout: float = 15) -> int:
        return self.process.wait(timeout)


@pytest.fixture
def uas(tmp_path: Path) -> Iterator[Callable[..., Uas]]:
    started: list[Uas] = []

    def start(*, status: int = 200, bye_after_ms: int | None = None, calls: int = 1) -> Uas:
        rtp = RtpReceiver()
        workdir = tmp_path / f"uas{len(started)}"
        workdir.mkdir()
        (workdir / "uas.xml").write_text(uas_scenario(rtp.port, status=status, bye_after_ms=bye_after_ms))
        port = free_port()
        media = free_port()
        proc = subprocess.Popen(
            [
                sipp.find_sipp(),
                "-sf",
                "uas.xml",
                "-i",
                "127.0.0.1",
                "-p",
                str(port),
                "-mi",
                "127.0.0.1",
                "-mp",
                str(media),
                "-ci",
                "127.0.0.1",
                "-nostdin",
                "-m",
                str(calls),
                "-trace_err",
                "-error_file",
                "errors.log",
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        uas = Uas(f"127.0.0.1:{port}", rtp, proc, workdir)
        started.append(uas)
        time.sleep(0.3)  # let it bind
        assert proc.poll() is None, f"the UAS exited with {proc.returncode}"
        return uas

    yield start
    for one in started:
        if one.process.poll() is None:
            one.process.kill()
        one.process.wait()
        one.rtp.close()


def media_port(result: sipp.SippResult) -> int:
    return int(result.command[result.command.index("-mp") + 1])


class TestLoopback:
    def test_dtmf_arrives_as_rfc4733_events_from_the_sdp_port(self, uas: Callable[..., Uas]) -> None:
        peer = uas()
        script = CallerScript(dtmf=(Dtmf("1234", 400), Dtmf("#*0", 1800)), hangup_after_ms=3000)
        result = run_caller(script, target=peer.target, timeout=30)
        result.raise_for_failure()
        assert peer.wait() == 0
        time.sleep(0.2)
        assert peer.rtp.digits() == "1234#*0"
        assert peer.rtp.sources() == {("127.0.0.1", media_port(result))}
        starts = peer.rtp.event_starts()
        expected = [0.4, 0.65, 0.9, 1.15, 1.8, 2.05, 2.3]
        assert starts == pytest.approx(expected, abs=0.1)

    def test_repeated_digits(self, uas: Callable[..., Uas]) -> None:
        peer = uas()
        result = run_caller(CallerScript(dtmf=(Dtmf("1100", 200),), hangup_after_ms=1500), target=peer.target)
        result.raise_for_failure()
        time.sleep(0.2)
        assert peer.rtp.digits() == "1100"

    def test_caller_hangs_up(self, uas: Callable[..., Uas]) -> None:
        peer = uas()
        result = run_caller(CallerScript(hangup_after_ms=1500), target=peer.target)
        result.raise_for_failure()
        assert (result.successful, result.failed, result.calls_created) == (1, 0, 1)
        assert result.who_hung_up == "caller"
        assert result.max_call_reached == 0
        assert result.call_lengths_ms[0] == pytest.approx(1500, abs=250)
        time.sleep(0.5)
        last = max(t for t, _a, _d in peer.rtp.packets) - peer.rtp.packets[0][0]
        assert last == pytest.approx(1.5, abs=0.3)  # the media stops with the call

    def test_ivr_hangs_up(self, uas: Callable[..., Uas]) -> None:
        peer = uas(bye_after_ms=1000)
        result = run_caller(CallerScript(), target=peer.target)
        result.raise_for_failure()
        assert result.who_hung_up == "ivr"
        assert result.max_call_reached == 0
        assert result.call_lengths_ms[0] == pytest.approx(1000, abs=250)
        assert result.duration_s < 5

    def test_ivr_hangs_up_before_the_scripted_hangup(self, uas: Callable[..., Uas]) -> None:
        peer = uas(bye_after_ms=500)
        result = run_caller(CallerScript(hangup_after_ms=5000), target=peer.target)
        result.raise_for_failure()
        assert result.who_hung_up == "ivr"

    def test_max_call_ms(self, uas: Callable[..., Uas]) -> None:
        peer = uas()
        result = run_caller(CallerScript(max_call_ms=1200), target=peer.target)
        result.raise_for_failure()  # SIP-wise fine...
        assert result.who_hung_up == "caller"
        assert result.max_call_reached == 1  # ...but the IVR never hung up
        assert "max_call_ms" in result.summary()

    def test_rejected_call_fails_with_the_reason(self, uas: Callable[..., Uas]) -> None:
        peer = uas(status=486)
        result = run_caller(CallerScript(), target=peer.target)
        assert not result.ok
        assert (result.exit_code, result.successful, result.failed) == (1, 0, 1)
        assert result.failure_counters == {"FailedUnexpectedMessage": 1}
        assert result.who_hung_up is None
        assert result.logs_dir is not None and result.logs_dir.is_dir()  # kept for a post-mortem
        with pytest.raises(LabError, match="486 Busy Here"):
            result.raise_for_failure()
        shutil.rmtree(result.logs_dir)

    def test_nobody_answers_then_the_timeout_kills_sipp(self) -> None:
        started = time.monotonic()
        result = run_caller(CallerScript(), target=f"127.0.0.1:{free_port()}", timeout=2)
        assert time.monotonic() - started < 10
        assert result.timed_out and not result.ok
        assert result.stats, "SIGTERM still lets SIPp write its statistics"
        assert result.stats["CurrentCall"] == "1"
        with pytest.raises(LabError, match="killed after the timeout"):
            result.raise_for_failure()
        assert result.logs_dir is not None
        shutil.rmtree(result.logs_dir)

    def test_workdir_is_kept_and_own_tmp_removed_on_success(self, uas: Callable[..., Uas], tmp_path: Path) -> None:
        peer = uas(calls=2)
        kept = run_caller(CallerScript(hangup_after_ms=200), target=peer.target, workdir=tmp_path / "run")
        kept.raise_for_failure()
        assert kept.logs_dir == tmp_path / "run"
        assert {sipp.SCENARIO_FILE, sipp.MEDIA_FILE, sipp.STAT_FILE, sipp.EVENTS_FILE, sipp.MESSAGES_FILE} <= {
            p.name for p in kept.logs_dir.iterdir()
        }
        assert "INVITE sip:5550100@" in (kept.logs_dir / sipp.MESSAGES_FILE).read_text()
        gone = run_caller(CallerScript(hangup_after_ms=200), target=peer.target)
        gone.raise_for_failure()
        assert gone.logs_dir is None and gone.scenario_path is None

    def test_audio_file_is_streamed(self, uas: Callable[..., Uas], tmp_path: Path) -> None:
        require("sox")
        tone = tmp_path / "tone.wav"
        subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(tone), "synth", "0.5", "sine", "1000"], check=True)
        peer = uas()
        run_caller(CallerScript(audio=tone, hangup_after_ms=1000), target=peer.target).raise_for_failure()
        time.sleep(0.2)
        audio = [d for _t, _a, d in peer.rtp.packets if d[1] & 0x7F == 0]
        assert all(d[12:] != b"\xff" * 160 for d in audio[2:20])  # the tone (first ~0.5 s)
        assert all(d[12:] == b"\xff" * 160 for d in audio[30:])  # then silence

    def test_load(self, uas: Callable[..., Uas]) -> None:
        peer = uas(calls=20)
        result = run_load(CallerScript(hangup_after_ms=500), rate=10, calls=20, target=peer.target)
        result.raise_for_failure()
        assert (result.successful, result.failed, result.calls_created) == (20, 0, 20)
        assert result.hangups == {"caller": 20}
        assert len(result.answer_times_ms) == 20 and len(result.call_lengths_ms) == 20
        assert 1.9 < result.duration_s < 6  # 20 calls at 10/s
        assert peer.wait() == 0

    def test_load_max_concurrent(self, uas: Callable[..., Uas]) -> None:
        peer = uas(calls=4)
        result = run_load(CallerScript(hangup_after_ms=600), rate=100, calls=4, max_concurrent=1, target=peer.target)
        result.raise_for_failure()
        assert result.duration_s > 4 * 0.6  # one at a time

    async def test_async_calls_run_in_parallel(self, uas: Callable[..., Uas]) -> None:
        peer = uas(calls=2)
        script = CallerScript(hangup_after_ms=1500)
        started = time.monotonic()
        results = await asyncio.gather(
            run_caller_async(script, target=peer.target), run_caller_async(script, target=peer.target)
        )
        for result in results:
            result.raise_for_failure()
        assert time.monotonic() - started < 2 * 1.5 + 1
        assert len({r.command[r.command.index("-p") + 1] for r in results}) == 2

    async def test_cancelling_kills_sipp(self, uas: Callable[..., Uas], tmp_path: Path) -> None:
        peer = uas()
        workdir = tmp_path / f"cancel-{uuid.uuid4().hex}"
        task = asyncio.create_task(run_caller_async(CallerScript(), target=peer.target, workdir=workdir))
        await asyncio.sleep(1.5)
        assert sipp_pids(workdir), "sipp should be running"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not sipp_pids(workdir)


def sipp_pids(workdir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(workdir).encode() in (entry / "cmdline").read_bytes() and int(entry.name) != os.getpid():
                    found.append(int(entry.name))
    return found


# ============================================================================ the lab Asterisk


@pytest.fixture(scope="session")
def asterisk(lab_lock: None) -> Iterator[AsteriskLab]:
    """The lab Asterisk: started (and stopped at the end) here unless one is already running,
    in which case it belongs to someone else and is only called, never reconfigured."""
    lab = AsteriskLab()
    started = not lab.is_running()
    if started:
        lab.provision()
        lab.install_config()
        lab.start()
    try:
        yield lab
    finally:
        if started:
            lab.stop()


class AmiEvents:
    """A raw AMI session that only collects UserEvents (enough to see LabDigits)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.events: list[dict[str, str]] = []

    @classmethod
    async def open(cls, lab: AsteriskLab) -> AmiEvents:
        reader, writer = await asyncio.open_connection("127.0.0.1", lab.ami_port)
        await reader.readline()  # banner
        writer.write(
            (
                f"Action: Login\r\nUsername: {lab.ami_username}\r\nSecret: {lab.ami_secret}\r\nEvents: user\r\n\r\n"
            ).encode()
        )
        self = cls(reader, writer)
        reply = await asyncio.wait_for(self._message(), 10)
        assert reply.get("Response") == "Success", reply
        return self

    async def _message(self) -> dict[str, str]:
        message: dict[str, str] = {}
        while True:
            line = (await self.reader.readline()).decode(errors="replace")
            if not line:
                raise ConnectionError("AMI closed")
            line = line.strip()
            if not line:
                if message:
                    return message
                continue
            key, _, value = line.partition(":")
            message[key.strip()] = value.strip()

    async def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float) -> dict[str, str]:
        async def scan() -> dict[str, str]:
            while True:
                message = await self._message()
                self.events.append(message)
                if predicate(message):
                    return message

        return await asyncio.wait_for(scan(), timeout)

    def close(self) -> None:
        self.writer.close()


def lab_script(caller_id: str, dialled: str, **kwargs: object) -> CallerScript:
    return CallerScript(caller_id=caller_id, from_user="lab", dialled=dialled, **kwargs)  # type: ignore[arg-type]


def unique_caller() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


class TestLabAsterisk:
    async def test_dtmf_reaches_read_intact(self, asterisk: AsteriskLab) -> None:
        ami = await AmiEvents.open(asterisk)
        caller = unique_caller()  # CALLERID(name) on the lab endpoint: finds our UserEvent
        try:
            # Read() plays "beep" first; the digits come after it, then Read() times out (6 s),
            # raises the UserEvent and hangs up.
            call = asyncio.create_task(
                run_caller_async(lab_script(caller, "dtmf-echo", dtmf=(Dtmf("1234", 1500),), max_call_ms=20000))
            )
            event = await ami.wait_for(
                lambda m: m.get("UserEvent") == "LabDigits" and m.get("CallerIDName") == caller, timeout=20
            )
            result = await call
        finally:
            ami.close()
        result.raise_for_failure()
        assert event["Digits"] == "1234"
        assert result.who_hung_up == "ivr"

    async def test_repeated_digits_reach_read(self, asterisk: AsteriskLab) -> None:
        ami = await AmiEvents.open(asterisk)
        caller = unique_caller()
        try:
            call = asyncio.create_task(
                run_caller_async(lab_script(caller, "dtmf-echo", dtmf=(Dtmf("9009#", 1500),), max_call_ms=20000))
            )
            event = await ami.wait_for(
                lambda m: m.get("UserEvent") == "LabDigits" and m.get("CallerIDName") == caller, timeout=20
            )
            result = await call
        finally:
            ami.close()
        result.raise_for_failure()
        assert event["Digits"] == "9009"  # '#' ends Read() and is not part of the result

    def test_caller_hangs_up(self, asterisk: AsteriskLab) -> None:
        result = run_caller(lab_script(unique_caller(), "hold", hangup_after_ms=2000))
        result.raise_for_failure()
        assert result.who_hung_up == "caller"
        assert result.max_call_reached == 0
        assert result.call_lengths_ms[0] == pytest.approx(2000, abs=300)

    def test_ivr_hangs_up(self, asterisk: AsteriskLab) -> None:
        result = run_caller(lab_script(unique_caller(), "bench-dialplan"))
        result.raise_for_failure()
        assert result.who_hung_up == "ivr"
        assert result.max_call_reached == 0
        assert result.call_lengths_ms[0] < 5000  # beep, then Hangup()

    async def test_call_is_up_while_the_test_looks(self, asterisk: AsteriskLab) -> None:
        call = asyncio.create_task(run_caller_async(lab_script(unique_caller(), "hold", hangup_after_ms=4000)))
        await asyncio.sleep(2)
        channels = await asyncio.to_thread(asterisk.cli, "core show channels concise")
        result = await call
        result.raise_for_failure()
        assert "PJSIP/lab-" in channels
        assert "hold" in channels

    def test_max_call_on_a_call_that_never_ends(self, asterisk: AsteriskLab) -> None:
        result = run_caller(lab_script(unique_caller(), "hold", max_call_ms=2500))
        result.raise_for_failure()
        assert result.who_hung_up == "caller"
        assert result.max_call_reached == 1

    def test_load_bench_dialplan(self, asterisk: AsteriskLab) -> None:
        result = run_load(lab_script(unique_caller(), "bench-dialplan", max_call_ms=15000), rate=10, calls=20)
        result.raise_for_failure()
        assert (result.successful, result.failed, result.calls_created) == (20, 0, 20)
        assert result.hangups == {"ivr": 20}
        assert result.max_call_reached == 0
