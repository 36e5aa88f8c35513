"""Drive SIPp 3.6 as a scripted caller against the lab Asterisk (loopback only).

One call or a load run: :func:`build_caller_scenario` writes the UAC scenario XML (pure),
:func:`build_caller_media` writes the caller's RTP stream as a pcap (pure), :func:`run_caller`,
:func:`run_caller_async` and :func:`run_load` run ``sipp`` and parse what it leaves behind into a
:class:`SippResult`.

How media is sent
-----------------
Everything the caller "says" is ONE RTP stream, pre-rendered into a pcap and replayed by SIPp's
``play_pcap_audio`` as soon as the ACK is sent:

* PCMU (payload 0) every 20 ms from the answer: the ``audio`` file (converted with sox) and
  then silence. Something must flow: Asterisk's ``Answer()`` waits for inbound audio.
* RFC 4733/2833 ``telephone-event`` (payload 101) packets for each :class:`Dtmf`, *in* that
  stream, at ``at_ms`` after the answer, digits ``spacing_ms`` apart. Audio is muted while an
  event is on, as a phone does.

One SSRC, one contiguous sequence, timestamps that grow: repeated digits ("11") and any order
work. (The ``dtmf_2833_N.pcap`` files shipped with SIPp all carry the same SSRC and a fixed
timestamp per digit, recorded from one session; Asterisk drops an event whose timestamp equals
the previous end, so "11" would arrive as "1", and mixing them with an audio stream means two
SSRCs/sequence spaces. Playing one stream also avoids SIPp 3.6 cancelling the running pcap
thread whenever a second ``play_pcap_audio`` starts on the same call.)

SIPp replays pcaps from ``-mi``:``-mp`` (the SDP says ``[media_ip]``/``[media_port]``) to the
address in the 200 OK's SDP, and stops when the call ends.

Who hung up is recorded by ``<log>`` actions in the scenario (``-trace_logs``), one line per
event and call, with SIPp's millisecond ``[clock_tick]``; they also give per-call answer times
and call lengths. SIP-level counts come from the last row of ``-trace_stat``.

SIPp 3.6.1 (Debian sip-tester) quirks handled here
--------------------------------------------------
* No ``-min_rtp_port``/``-max_rtp_port`` (3.7+): each run gets its own free ``-mp`` (SIPp also
  binds ``-mp`` + 2) and ``-p``; a lost race (exit 254, "binding") is retried with new ports.
* ``-timeout`` is soft (it waits for calls in progress), so the wrapper kills: SIGTERM, which
  still writes the statistics, but makes SIPp exit **0**; ``timed_out`` says so and ``ok`` is False.
* The control socket binds 0.0.0.0:8888 (and up) unless ``-ci 127.0.0.1``.
* The first call starts 1/rate s after launch: single calls run at ``-r 100``.
* The default ``-l`` is 3 x rate x (unknown) call length, as low as 3: ``-l`` is always given.
* An ``ontimeout`` jump is reported in the error log like an error: :func:`parse_error_log`
  drops those notices.
* Message text: ``[word]`` is a keyword (an unknown one is fatal), ``\\xHH`` a byte. User text is
  passed through :func:`sipp_escape`.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from lab.errors import LabError

__all__ = [
    "CallTrace",
    "CallerScript",
    "Dtmf",
    "RtpPacket",
    "SippResult",
    "build_caller_media",
    "build_caller_scenario",
    "caller_rtp",
    "find_sipp",
    "load_audio_ulaw",
    "parse_error_log",
    "parse_event_log",
    "parse_stat_csv",
    "quoted_display",
    "read_pcap_rtp",
    "read_run",
    "run_caller",
    "run_caller_async",
    "run_load",
    "sipp_escape",
    "uri_user",
]

# --------------------------------------------------------------------------------------------
# constants

PTIME_MS = 20
SAMPLES_PER_PACKET = 160  # 8 kHz * 20 ms
PT_PCMU = 0
PT_TELEPHONE_EVENT = 101
ULAW_SILENCE = 0xFF
DTMF_VOLUME = 10  # -10 dBm0
DTMF_END_REPEATS = 3  # RFC 4733 2.5.1.4: the final packet is sent three times
MEDIA_TAIL_MS = 2000  # the stream outlasts the planned hangup by this much

DTMF_EVENTS: Mapping[str, int] = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}

EXIT_CODES: Mapping[int, str] = {
    0: "all calls were successful",
    1: "at least one call failed",
    97: "exit on internal command; calls may have been processed",
    99: "normal exit without calls processed",
    255: "fatal error",
    254: "fatal error binding a socket",
}

# What a run leaves in its workdir
MEDIA_FILE = "caller_media.pcap"
SCENARIO_FILE = "caller.xml"
STAT_FILE = "stat.csv"  # -trace_stat
ERRORS_FILE = "errors.log"  # -trace_err
EVENTS_FILE = "events.log"  # -trace_logs: the scenario's <log> lines
MESSAGES_FILE = "messages.log"  # -trace_msg
SCREEN_FILE = "screen.log"  # -trace_screen: the final screens
CALLERS_FILE = "callers.csv"  # -inf: CallerScript.caller_ids, one per call
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
RUN_FILES = (STAT_FILE, ERRORS_FILE, EVENTS_FILE, MESSAGES_FILE, SCREEN_FILE, STDOUT_FILE, STDERR_FILE)
SINGLE_CALL_RATE = 100.0  # SIPp starts the first call 1/rate s after launch
LOG_TAG = "IVRLAB"
_ALLOWED_HOSTS = frozenset({"127.0.0.1"})

# RFC 3261 user part: unreserved / escaped / user-unreserved
_USER_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()&=+$,;?/")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# A pooled caller id goes into the injection file and into the INVITE unescaped (SIPp substitutes
# [field0] as is): only characters that need no escaping in a URI user, a quoted display name, the
# file's ';' fields or SIPp's [keywords].
_POOLED_CALLER_ID = re.compile(r"[A-Za-z0-9+._-]+")
_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Type",
        "Content-Length",
        "P-Asserted-Identity",
    )
)


# --------------------------------------------------------------------------------------------
# what the caller does


@dataclass(frozen=True)
class Dtmf:
    """RFC 4733 digits sent ``at_ms`` after the answer, one every ``spacing_ms``."""

    digits: str
    at_ms: int
    spacing_ms: int = 250
    duration_ms: int = 120

    def __post_init__(self) -> None:
        if not self.digits:
            raise ValueError("Dtmf.digits is empty")
        bad = [d for d in self.digits if d.upper() not in DTMF_EVENTS]
        if bad:
            raise ValueError(f"Dtmf.digits {self.digits!r}: not DTMF: {''.join(bad)!r} (0-9 * # A-D)")
        if self.at_ms < 0:
            raise ValueError(f"Dtmf.at_ms must be >= 0, got {self.at_ms}")
        if self.duration_ms < 2 * PTIME_MS:
            raise ValueError(f"Dtmf.duration_ms must be >= {2 * PTIME_MS}, got {self.duration_ms}")
        if self.spacing_ms < self.duration_ms + 2 * PTIME_MS:
            raise ValueError(
                f"Dtmf.spacing_ms ({self.spacing_ms}) must leave >= {2 * PTIME_MS} ms "
                f"between digits of {self.duration_ms} ms"
            )

    def schedule(self) -> list[tuple[str, int]]:
        """(digit, start ms after answer) for each digit."""
        return [(d.upper(), self.at_ms + i * self.spacing_ms) for i, d in enumerate(self.digits)]


@dataclass(frozen=True)
class CallerScript:
    """One scripted caller. Times are milliseconds after the call is answered (the ACK)."""

    caller_id: str = "+15551230001"  # From display name, and From user unless from_user is set
    dialled: str = "5550100"  # Request-URI / To user
    from_user: str | None = None  # e.g. "lab" for the lab endpoint; caller_id then goes in P-Asserted-Identity
    dtmf: tuple[Dtmf, ...] = ()
    audio: Path | None = None  # any file sox reads (or raw .ul/.ulaw); silence otherwise
    hangup_after_ms: int | None = None  # caller sends BYE then; None: wait for the IVR's BYE
    max_call_ms: int = 60000  # caller hangs up then anyway; SippResult.max_call_reached says so
    headers: Mapping[str, str] = field(default_factory=dict)  # extra INVITE headers, sent literally
    answer_timeout_ms: int = 30000  # no 200 OK by then: SIPp CANCELs and the call fails
    # A pool of caller ids, one per call in order (wrapping): they replace caller_id, each call
    # taking the next line of SIPp's injection file. Many callers in one load run, as on a trunk.
    caller_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_text("caller_id", self.caller_id)
        if not isinstance(self.caller_ids, tuple):
            object.__setattr__(self, "caller_ids", tuple(self.caller_ids))
        for pooled in self.caller_ids:
            if not isinstance(pooled, str) or not _POOLED_CALLER_ID.fullmatch(pooled):
                raise ValueError(f"caller_ids: {pooled!r} is not a plain number (letters, digits, + . _ -)")
        _check_text("dialled", self.dialled)
        if self.from_user is not None:
            _check_text("from_user", self.from_user)
        if not isinstance(self.dtmf, tuple):
            object.__setattr__(self, "dtmf", tuple(self.dtmf))
        if self.max_call_ms <= 0:
            raise ValueError(f"max_call_ms must be > 0, got {self.max_call_ms}")
        if self.answer_timeout_ms <= 0:
            raise ValueError(f"answer_timeout_ms must be > 0, got {self.answer_timeout_ms}")
        if self.hangup_after_ms is not None and not 0 <= self.hangup_after_ms <= self.max_call_ms:
            raise ValueError(
                f"hangup_after_ms ({self.hangup_after_ms}) must be within 0..max_call_ms ({self.max_call_ms})"
            )
        for name, value in self.headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a SIP token")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the scenario itself")
            _check_text(f"header {name}", value, allow_empty=True)
        end = self.hangup_ms
        spans = sorted((start, start + d.duration_ms) for d in self.dtmf for _digit, start in d.schedule())
        for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
            if s2 < e1 + 2 * PTIME_MS:
                raise ValueError(f"DTMF digits overlap (one starts at {s2} ms, before the previous ends)")
        if spans and spans[-1][1] > end:
            raise ValueError(f"DTMF ends at {spans[-1][1]} ms, after the caller hangs up at {end} ms")

    @property
    def hangup_ms(self) -> int:
        """When the caller hangs up if the IVR has not: hangup_after_ms, else max_call_ms."""
        return self.max_call_ms if self.hangup_after_ms is None else self.hangup_after_ms

    @property
    def effective_from_user(self) -> str:
        if self.from_user is not None:
            return self.from_user
        return POOLED_CALLER_ID if self.caller_ids else self.caller_id


#: What a scenario says instead of the caller id when CallerScript.caller_ids is set: SIPp's
#: first field of the injection file's line for this call.
POOLED_CALLER_ID = "[field0]"


def build_injection_file(caller_ids: Sequence[str]) -> str:
    """SIPp's ``-inf`` file for a caller id pool: read in order, one line per call."""
    return "SEQUENTIAL\n" + "".join(f"{caller_id};\n" for caller_id in caller_ids)


def _check_text(what: str, value: str, *, allow_empty: bool = False) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{what} is empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{what} {value!r} contains control characters (CR/LF/NUL...)")


# --------------------------------------------------------------------------------------------
# escaping


def sipp_escape(text: str) -> str:
    r"""Make ``text`` literal inside a SIPp message: SIPp reads ``[...]`` as a keyword and
    ``\xHH`` as a byte; non-ASCII goes out as its UTF-8 bytes so the XML stays ASCII."""
    out: list[str] = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if byte >= 0x80 or ch in "[]\\":
            out.append(f"\\x{byte:02X}")
        else:
            out.append(ch)
    return "".join(out)


def uri_user(text: str) -> str:
    """Percent-encode a SIP URI user part (RFC 3261 ``user``), then SIPp-escape it."""
    encoded = "".join(ch if ch in _USER_SAFE else "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in text)
    return sipp_escape(encoded)


def quoted_display(text: str) -> str:
    """A SIP quoted-string (backslash-escaped ``"`` and ``\\``), SIPp-escaped."""
    return '"' + sipp_escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


# --------------------------------------------------------------------------------------------
# the scenario (pure)


def _log(event: str) -> str:
    return f'<nop><action><log message="{LOG_TAG} call=[call_number] event={event} tick=[clock_tick]"/></action></nop>'


def _cdata(message: str) -> str:
    body = message.strip("\n") + "\n"
    if "]]>" in body:  # cannot happen: user text has its ']' escaped as \x5D
        raise AssertionError("']]>' in a SIPp message")
    return f"<![CDATA[\n{body}\n]]>"


def build_caller_scenario(script: CallerScript, *, media_file: str = MEDIA_FILE) -> str:
    """The SIPp UAC scenario XML for ``script``. ``media_file`` is the pcap that
    :func:`build_caller_media` renders, relative to SIPp's working directory."""
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", media_file):
        raise ValueError(f"media_file {media_file!r}: use a plain path")
    ruri = uri_user(script.dialled)
    pooled = bool(script.caller_ids)
    from_user = POOLED_CALLER_ID if pooled and script.from_user is None else uri_user(script.effective_from_user)
    caller_user = POOLED_CALLER_ID if pooled else uri_user(script.caller_id)
    display = f'"{POOLED_CALLER_ID}"' if pooled else quoted_display(script.caller_id)
    me = f"<sip:{from_user}@[local_ip]:[local_port]>"
    from_hdr = f"From: {display} {me};tag=[pid]IVRLAB[call_number]"
    to_hdr = f"To: <sip:{ruri}@[remote_ip]:[remote_port]>"
    contact = f"Contact: {me}"
    extra = []
    if script.from_user is not None and (pooled or script.from_user != script.caller_id):
        extra.append(f"P-Asserted-Identity: {display} <sip:{caller_user}@[local_ip]>")
    extra += [f"{name}: {sipp_escape(value)}" for name, value in script.headers.items()]

    invite = "\n".join(
        [
            f"INVITE sip:{ruri}@[remote_ip]:[remote_port] SIP/2.0",
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            from_hdr,
            to_hdr,
            "Call-ID: [call_id]",
            "CSeq: 1 INVITE",
            contact,
            "Max-Forwards: 70",
            "User-Agent: ivr-lab-sipp",
            *extra,
            "Content-Type: application/sdp",
            "Content-Length: [len]",
            "",
            "v=0",
            "o=ivrlab [pid] [call_number] IN IP[media_ip_type] [media_ip]",
            "s=ivr-lab caller",
            "c=IN IP[media_ip_type] [media_ip]",
            "t=0 0",
            f"m=audio [media_port] RTP/AVP {PT_PCMU} {PT_TELEPHONE_EVENT}",
            f"a=rtpmap:{PT_PCMU} PCMU/8000",
            f"a=rtpmap:{PT_TELEPHONE_EVENT} telephone-event/8000",
            f"a=fmtp:{PT_TELEPHONE_EVENT} 0-16",
            f"a=ptime:{PTIME_MS}",
            "a=sendrecv",
        ]
    )

    def in_dialog(method: str, cseq: int) -> str:
        # [next_url]/[routes] come from the 200 OK's Contact/Record-Route (rrs="true").
        return "\n".join(
            [
                f"{method} [next_url] SIP/2.0",
                "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
                "[routes]",
                from_hdr,
                f"{to_hdr}[peer_tag_param]",
                "Call-ID: [call_id]",
                f"CSeq: {cseq} {method}",
                contact,
                "Max-Forwards: 70",
                "Content-Length: 0",
            ]
        )

    ok_to_bye = "\n".join(
        [
            "SIP/2.0 200 OK",
            "[last_Via:]",
            "[last_From:]",
            "[last_To:]",
            "[last_Call-ID:]",
            "[last_CSeq:]",
            contact,
            "Content-Length: 0",
        ]
    )

    reason = "scripted" if script.hangup_after_ms is not None else "max_call"
    lines = [
        '<?xml version="1.0" encoding="ISO-8859-1" ?>',
        "<!-- generated by lab.sipp.build_caller_scenario -->",
        '<scenario name="ivr-lab caller">',
        _log("start"),
        f'<send retrans="500">{_cdata(invite)}</send>',
        '<recv response="100" optional="true"/>',
        '<recv response="180" optional="true"/>',
        '<recv response="181" optional="true"/>',
        '<recv response="182" optional="true"/>',
        '<recv response="183" optional="true"/>',
        f'<recv response="200" rtd="true" rrs="true" timeout="{script.answer_timeout_ms}"/>',
        f"<send>{_cdata(in_dialog('ACK', 1))}</send>",
        f'<nop><action><exec play_pcap_audio="{media_file}"/></action></nop>',
        _log("answered"),
        # Either the IVR's BYE arrives first, or the caller hangs up at hangup_ms.
        f'<recv request="BYE" timeout="{script.hangup_ms}" ontimeout="caller_hangup"/>',
        f"<send>{_cdata(ok_to_bye)}</send>",
        '<nop next="end">'
        f'<action><log message="{LOG_TAG} call=[call_number] event=hangup by=ivr tick=[clock_tick]"/></action>'
        "</nop>",
        '<label id="caller_hangup"/>',
        _log(f"hangup by=caller reason={reason}"),
        f'<send retrans="500">{_cdata(in_dialog("BYE", 2))}</send>',
        # glare: the IVR's BYE crosses ours
        '<recv request="BYE" optional="true" next="glare"/>',
        '<recv response="200" next="end"/>',
        '<label id="glare"/>',
        _log("glare"),
        f"<send>{_cdata(ok_to_bye)}</send>",
        '<recv response="481" optional="true" next="end"/>',
        '<recv response="200" timeout="4000" ontimeout="end"/>',
        '<label id="end"/>',
        _log("end"),
        "</scenario>",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# the media (pure)

_PCAP_EPOCH = 1_700_000_000
_SSRC = 0x1F2E3D4C
_FIRST_SEQ = 1000
_FIRST_TS = 8000
_PCAP_SRC = (bytes([10, 0, 0, 1]), 40000)
_PCAP_DST = (bytes([10, 0, 0, 2]), 50000)


@dataclass(frozen=True)
class RtpPacket:
    """One packet of the caller's stream (also what unit tests read back)."""

    at_ms: int
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    payload: bytes


def _dtmf_payload(event: int, end: bool, duration: int) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | DTMF_VOLUME, duration)


def caller_rtp(script: CallerScript, audio_ulaw: bytes = b"") -> list[RtpPacket]:
    """The caller's RTP stream: PCMU (``audio_ulaw`` then silence) with DTMF events in it."""
    length_ms = script.hangup_ms + MEDIA_TAIL_MS
    ticks = length_ms // PTIME_MS
    events: dict[int, tuple[int, int]] = {}  # start tick -> (event code, packet count)
    for dtmf in script.dtmf:
        count = -(-dtmf.duration_ms // PTIME_MS)
        for digit, start_ms in dtmf.schedule():
            events[round(start_ms / PTIME_MS)] = (DTMF_EVENTS[digit], count)
    packets: list[RtpPacket] = []
    seq = _FIRST_SEQ
    tick = 0
    first_audio = True
    while tick < ticks:
        ts = (_FIRST_TS + tick * SAMPLES_PER_PACKET) & 0xFFFFFFFF
        if tick in events:
            code, count = events[tick]
            for j in range(count):
                end = j == count - 1
                payload = _dtmf_payload(code, end, (j + 1) * SAMPLES_PER_PACKET)
                for _ in range(DTMF_END_REPEATS if end else 1):
                    packets.append(
                        RtpPacket((tick + j) * PTIME_MS, PT_TELEPHONE_EVENT, j == 0, seq & 0xFFFF, ts, payload)
                    )
                seq += 1
            tick += count
            continue
        chunk = audio_ulaw[tick * SAMPLES_PER_PACKET : (tick + 1) * SAMPLES_PER_PACKET]
        chunk += bytes([ULAW_SILENCE]) * (SAMPLES_PER_PACKET - len(chunk))
        packets.append(RtpPacket(tick * PTIME_MS, PT_PCMU, first_audio, seq & 0xFFFF, ts, chunk))
        first_audio = False
        seq += 1
        tick += 1
    return packets


def _rtp_bytes(p: RtpPacket) -> bytes:
    return (
        struct.pack("!BBHII", 0x80, (0x80 if p.marker else 0) | p.payload_type, p.seq, p.timestamp, _SSRC) + p.payload
    )


def build_caller_media(script: CallerScript, audio_ulaw: bytes = b"") -> bytes:
    """The caller's RTP stream as a pcap (Ethernet/IPv4/UDP) for ``play_pcap_audio``.

    SIPp rewrites addresses and ports when it replays; it keeps the pcap timing."""
    out = io.BytesIO()
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for p in caller_rtp(script, audio_ulaw):
        rtp = _rtp_bytes(p)
        udp = struct.pack("!HHHH", _PCAP_SRC[1], _PCAP_DST[1], 8 + len(rtp), 0) + rtp
        ip_header = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0, _PCAP_SRC[0], _PCAP_DST[0]
        )
        ip_header = ip_header[:10] + struct.pack("!H", _ip_checksum(ip_header)) + ip_header[12:]
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip_header + udp
        seconds, ms = divmod(p.at_ms, 1000)
        out.write(struct.pack("<IIII", _PCAP_EPOCH + seconds, ms * 1000, len(frame), len(frame)))
        out.write(frame)
    return out.getvalue()


def _ip_checksum(header: bytes) -> int:
    total = int(sum(struct.unpack(f"!{len(header) // 2}H", header)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def read_pcap_rtp(data: bytes) -> list[tuple[float, bytes]]:
    """(seconds since the first packet, RTP bytes) from an Ethernet/IPv4/UDP pcap."""
    magic = struct.unpack("<I", data[:4])[0]
    if magic != 0xA1B2C3D4:
        raise ValueError(f"not a little-endian microsecond pcap (magic {magic:#x})")
    out: list[tuple[float, bytes]] = []
    offset = 24
    first: int | None = None
    while offset + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack("<IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        ihl = (frame[14] & 0x0F) * 4
        micros = sec * 1_000_000 + usec
        first = micros if first is None else first
        out.append(((micros - first) / 1e6, frame[14 + ihl + 8 :]))
    return out


def load_audio_ulaw(path: Path) -> bytes:
    """8 kHz mono mu-law bytes of ``path``: raw .ul/.ulaw/.pcmu as is, anything else via sox."""
    if path.suffix.lower() in {".ul", ".ulaw", ".mulaw", ".pcmu", ".u8"}:
        return path.read_bytes()
    sox = shutil.which("sox")
    if sox is None:
        raise LabError(f"sox is needed to convert {path} to 8 kHz mu-law")
    proc = subprocess.run(
        [sox, "-V1", str(path), "-t", "raw", "-r", "8000", "-c", "1", "-e", "mu-law", "-b", "8", "-"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise LabError(f"sox could not convert {path}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


# --------------------------------------------------------------------------------------------
# parsing what SIPp leaves behind (pure)


def parse_stat_csv(text: str) -> dict[str, str]:
    """The last row of a ``-trace_stat`` file as {column: value} (``(C)`` columns are totals)."""
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=";") if row]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


def stat_int(stats: Mapping[str, str], name: str) -> int:
    value = stats.get(name, "")
    try:
        return int(float(value))
    except ValueError:
        return 0


def parse_sipp_duration(value: str) -> float | None:
    """SIPp's ``HH:MM:SS:microseconds`` (or ``HH:MM:SS``) as seconds."""
    parts = value.strip().split(":")
    try:
        if len(parts) == 4:
            h, m, s, us = (int(p) for p in parts)
            return h * 3600 + m * 60 + s + us / 1e6
        if len(parts) == 3:
            h, m, s = (int(p) for p in parts)
            return float(h * 3600 + m * 60 + s)
    except ValueError:
        return None
    return None


_EVENT_LINE = re.compile(rf"^{LOG_TAG} call=(\d+) event=(\w+)(.*?) tick=(\d+)\s*$")


@dataclass
class CallTrace:
    """What the scenario's ``<log>`` actions say about one call."""

    call: int
    start_tick: int | None = None
    answered_tick: int | None = None
    hangup_by: str | None = None  # "ivr" | "caller"
    hangup_reason: str | None = None  # for the caller: "scripted" | "max_call"
    glare: bool = False
    end_tick: int | None = None

    @property
    def answer_ms(self) -> int | None:
        if self.start_tick is None or self.answered_tick is None:
            return None
        return self.answered_tick - self.start_tick

    @property
    def length_ms(self) -> int | None:
        if self.answered_tick is None or self.end_tick is None:
            return None
        return self.end_tick - self.answered_tick


def parse_event_log(text: str) -> dict[int, CallTrace]:
    """Per-call traces from the ``-trace_logs`` file of a caller scenario."""
    calls: dict[int, CallTrace] = {}
    for line in text.splitlines():
        m = _EVENT_LINE.match(line.strip())
        if not m:
            continue
        number, event, rest, tick = int(m[1]), m[2], m[3], int(m[4])
        trace = calls.setdefault(number, CallTrace(number))
        attrs = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
        if event == "start":
            trace.start_tick = tick
        elif event == "answered":
            trace.answered_tick = tick
        elif event == "hangup":
            trace.hangup_by = attrs.get("by")
            trace.hangup_reason = attrs.get("reason")
        elif event == "glare":
            trace.glare = True
        elif event == "end":
            trace.end_tick = tick
    return calls


_ERROR_START = re.compile(r"^\d{4}-\d{2}-\d{2}\t[\d:.]+\t[\d.]+: ")
_BENIGN_ERRORS = (
    re.compile(r"receive timeout on message .*jumping to label"),  # our ontimeout branches
)


def parse_error_log(text: str) -> list[str]:
    """The events of a ``-trace_err`` file (each may span lines: SIPp quotes whole messages),
    without the notices our own ``ontimeout`` jumps produce."""
    events: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if _ERROR_START.match(line):
            if current:
                events.append("\n".join(current).rstrip())
            current = [_ERROR_START.sub("", line)]
        elif current:
            current.append(line)
    if current:
        events.append("\n".join(current).rstrip())
    return [e for e in events if not any(p.search(e) for p in _BENIGN_ERRORS)]


# --------------------------------------------------------------------------------------------
# the result


@dataclass
class SippResult:
    """What one SIPp run did, at SIP level. SIPp success does not prove the IVR ran."""

    ok: bool  # SIPp exit code 0, not killed, every call successful
    exit_code: int
    successful: int
    failed: int
    calls_created: int
    who_hung_up: str | None  # "caller" | "ivr" when every traced call agrees, else None
    duration_s: float  # wall time of the sipp process
    calls_requested: int = 1
    timed_out: bool = False  # we killed sipp after `timeout` seconds
    max_call_reached: int = 0  # calls the caller ended because max_call_ms elapsed
    hangups: dict[str, int] = field(default_factory=dict)  # {"ivr": n, "caller": n}
    answer_times_ms: tuple[int, ...] = ()  # per answered call: INVITE sent -> 200 OK received
    call_lengths_ms: tuple[int, ...] = ()  # per finished call: answer (ACK) -> end of call
    failure_counters: dict[str, int] = field(default_factory=dict)  # non-zero Failed*(C) stats
    stats: dict[str, str] = field(default_factory=dict)  # last -trace_stat row
    errors: tuple[str, ...] = ()  # SIPp error-log events (benign ontimeout notices removed)
    stdout_tail: str = ""
    stderr_tail: str = ""
    scenario_path: Path | None = None  # None once the workdir was removed
    logs_dir: Path | None = None
    command: tuple[str, ...] = ()

    @property
    def answer_time_avg_ms(self) -> float | None:
        return sum(self.answer_times_ms) / len(self.answer_times_ms) if self.answer_times_ms else None

    @property
    def call_length_avg_ms(self) -> float | None:
        return sum(self.call_lengths_ms) / len(self.call_lengths_ms) if self.call_lengths_ms else None

    @property
    def exit_meaning(self) -> str:
        return EXIT_CODES.get(self.exit_code, f"unexpected exit code {self.exit_code}")

    def summary(self) -> str:
        parts = [
            f"sipp exit {self.exit_code} ({self.exit_meaning})",
            f"{self.successful} successful / {self.failed} failed / {self.calls_created} created"
            f" of {self.calls_requested}",
        ]
        if self.timed_out:
            parts.append("killed after the timeout")
        if self.failure_counters:
            parts.append(", ".join(f"{k}={v}" for k, v in sorted(self.failure_counters.items())))
        if self.max_call_reached:
            parts.append(f"{self.max_call_reached} call(s) hit max_call_ms")
        if self.who_hung_up:
            parts.append(f"hung up by {self.who_hung_up}")
        return "; ".join(parts)

    def raise_for_failure(self) -> None:
        """Raise :class:`LabError` unless the run was a SIP-level success."""
        if self.ok:
            return
        lines = [f"SIPp run failed: {self.summary()}"]
        if self.errors:
            lines.append("sipp errors:")
            for event in self.errors[:10]:
                lines.append("  " + event.replace("\n", "\n    "))
            if len(self.errors) > 10:
                lines.append(f"  ... {len(self.errors) - 10} more")
        elif self.stderr_tail.strip():
            lines.append("sipp stderr:\n  " + self.stderr_tail.strip().replace("\n", "\n  "))
        if self.logs_dir is not None:
            lines.append(f"logs: {self.logs_dir}")
        lines.append("command: " + " ".join(self.command))
        raise LabError("\n".join(lines))


# --------------------------------------------------------------------------------------------
# running sipp


def find_sipp() -> str:
    """The sipp binary: $IVR_SIPP, else ``sipp`` on PATH."""
    candidate = os.environ.get("IVR_SIPP") or shutil.which("sipp")
    if not candidate:
        raise LabError("sipp not found: install the Debian package sip-tester or set IVR_SIPP")
    return candidate


def _check_target(target: str) -> tuple[str, int]:
    host, sep, port_text = target.rpartition(":")
    if not sep:
        host, port_text = target, "5060"
    if host not in _ALLOWED_HOSTS:
        raise ValueError(f"target {target!r}: the lab only calls 127.0.0.1")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"target {target!r}: bad port") from None
    if not 0 < port < 65536:
        raise ValueError(f"target {target!r}: bad port")
    return host, port


_reserved_ports: set[int] = set()
_ports_lock = threading.Lock()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _reserve_ports() -> Iterator[tuple[int, int]]:
    """(sip port, media port) free on 127.0.0.1, media port + 2 free too (SIPp binds both).
    Another process may still take them before sipp binds: callers retry on exit code 254."""
    with _ports_lock:
        chosen: list[int] = []
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port in _reserved_ports or port in chosen:
                continue
            if not chosen:
                chosen.append(port)
                continue
            if port + 2 < 65536 and port + 2 not in _reserved_ports and _bindable(port + 2):
                chosen.append(port)
                break
        if len(chosen) != 2:
            raise LabError("could not find free UDP ports on 127.0.0.1 for sipp")
        sip_port, media_port = chosen
        held = {sip_port, media_port, media_port + 2}
        _reserved_ports.update(held)
    try:
        yield sip_port, media_port
    finally:
        with _ports_lock:
            _reserved_ports.difference_update(held)


@dataclass
class _Plan:
    script: CallerScript
    target: str
    calls: int
    rate: float
    max_concurrent: int | None
    timeout: float
    workdir: Path
    own_workdir: bool
    keep_logs: bool | None
    trace_messages: bool
    sipp: str

    @property
    def scenario(self) -> Path:
        return self.workdir / SCENARIO_FILE

    def argv(self, sip_port: int, media_port: int) -> list[str]:
        wd = self.workdir
        argv = [
            self.sipp,
            self.target,
            "-sf",
            str(self.scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(sip_port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(media_port),
            "-ci",
            "127.0.0.1",
            "-t",
            "u1",
            "-nostdin",
            "-aa",
            "-m",
            str(self.calls),
            "-r",
            f"{self.rate:g}",
            "-trace_stat",
            "-stf",
            str(wd / STAT_FILE),
            "-fd",
            "1",
            "-trace_err",
            "-error_file",
            str(wd / ERRORS_FILE),
            "-trace_logs",
            "-log_file",
            str(wd / EVENTS_FILE),
            "-trace_screen",
            "-screen_file",
            str(wd / SCREEN_FILE),
        ]
        if self.script.caller_ids:
            argv += ["-inf", str(wd / CALLERS_FILE)]
        # SIPp's own default limit is 3 * rate * (unknown) call length: as low as 3 calls.
        argv += ["-l", str(self.max_concurrent if self.max_concurrent is not None else self.calls)]
        if self.trace_messages:
            argv += ["-trace_msg", "-message_file", str(wd / MESSAGES_FILE)]
        return argv


def _plan(
    script: CallerScript,
    *,
    target: str,
    calls: int,
    rate: float,
    max_concurrent: int | None,
    timeout: float,
    workdir: Path | None,
    keep_logs: bool | None,
    trace_messages: bool,
) -> _Plan:
    _check_target(target)
    if calls < 1:
        raise ValueError(f"calls must be >= 1, got {calls}")
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    sipp = find_sipp()
    own = workdir is None
    # absolute: sipp runs in it, and its log options name files in it
    wd = Path(tempfile.mkdtemp(prefix="ivr-sipp-")) if workdir is None else Path(workdir).resolve()
    try:
        wd.mkdir(parents=True, exist_ok=True)
        plan = _Plan(script, target, calls, rate, max_concurrent, timeout, wd, own, keep_logs, trace_messages, sipp)
        audio = load_audio_ulaw(script.audio) if script.audio is not None else b""
        (wd / MEDIA_FILE).write_bytes(build_caller_media(script, audio))
        plan.scenario.write_text(build_caller_scenario(script, media_file=MEDIA_FILE), encoding="ascii")
        if script.caller_ids:
            (wd / CALLERS_FILE).write_text(build_injection_file(script.caller_ids), encoding="ascii")
        for name in RUN_FILES:
            (wd / name).unlink(missing_ok=True)
    except BaseException:
        if own:
            shutil.rmtree(wd, ignore_errors=True)
        raise
    return plan


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    return data[-limit:].decode("utf-8", errors="replace")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def read_run(
    workdir: Path,
    *,
    calls_requested: int,
    exit_code: int,
    timed_out: bool = False,
    duration_s: float = 0.0,
    command: tuple[str, ...] = (),
) -> SippResult:
    """Build a :class:`SippResult` from the files a run left in ``workdir``."""
    stats = parse_stat_csv(_read(workdir / STAT_FILE))
    traces = sorted(parse_event_log(_read(workdir / EVENTS_FILE)).values(), key=lambda t: t.call)
    successful = stat_int(stats, "SuccessfulCall(C)")
    failed = stat_int(stats, "FailedCall(C)")
    counters = {
        name.removesuffix("(C)"): stat_int(stats, name)
        for name in stats
        if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)"
    }
    hangups = Counter(t.hangup_by for t in traces if t.hangup_by)
    scenario = workdir / SCENARIO_FILE
    return SippResult(
        ok=exit_code == 0 and not timed_out and failed == 0 and successful >= calls_requested,
        exit_code=exit_code,
        successful=successful,
        failed=failed,
        calls_created=stat_int(stats, "TotalCallCreated"),
        who_hung_up=next(iter(hangups)) if len(hangups) == 1 else None,
        duration_s=duration_s,
        calls_requested=calls_requested,
        timed_out=timed_out,
        max_call_reached=sum(1 for t in traces if t.hangup_reason == "max_call"),
        hangups=dict(hangups),
        answer_times_ms=tuple(t.answer_ms for t in traces if t.answer_ms is not None),
        call_lengths_ms=tuple(t.length_ms for t in traces if t.length_ms is not None),
        failure_counters={k: v for k, v in counters.items() if v},
        stats=stats,
        errors=tuple(parse_error_log(_read(workdir / ERRORS_FILE))),
        stdout_tail=_tail(workdir / STDOUT_FILE),
        stderr_tail=_tail(workdir / STDERR_FILE),
        scenario_path=scenario if scenario.exists() else None,
        logs_dir=workdir,
        command=command,
    )


def _collect(plan: _Plan, argv: list[str], exit_code: int, timed_out: bool, duration: float) -> SippResult:
    result = read_run(
        plan.workdir,
        calls_requested=plan.calls,
        exit_code=exit_code,
        timed_out=timed_out,
        duration_s=duration,
        command=tuple(argv),
    )
    keep = plan.keep_logs if plan.keep_logs is not None else not result.ok
    if plan.own_workdir and not keep:
        shutil.rmtree(plan.workdir, ignore_errors=True)
        result.scenario_path = None
        result.logs_dir = None
    return result


_BIND_FAILED = 254  # sipp's -2
_ATTEMPTS = 3
_TERM_GRACE_S = 5.0


def _bind_failed(plan: _Plan, exit_code: int) -> bool:
    if exit_code == _BIND_FAILED:
        return True
    return exit_code != 0 and "bind" in _tail(plan.workdir / STDERR_FILE).lower()


def _open_outputs(workdir: Path) -> tuple[BinaryIO, BinaryIO]:
    return open(workdir / STDOUT_FILE, "wb"), open(workdir / STDERR_FILE, "wb")


def _run_sync(plan: _Plan) -> SippResult:
    for attempt in range(_ATTEMPTS):
        with _reserve_ports() as (sip_port, media_port):
            argv = plan.argv(sip_port, media_port)
            started = time.monotonic()
            timed_out = False
            out, err = _open_outputs(plan.workdir)
            with out, err:
                proc = subprocess.Popen(argv, cwd=plan.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
                try:
                    exit_code = proc.wait(timeout=plan.timeout)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    exit_code = _stop_sync(proc)
                except BaseException:
                    _stop_sync(proc)
                    raise
            duration = time.monotonic() - started
        if not timed_out and attempt < _ATTEMPTS - 1 and _bind_failed(plan, exit_code):
            continue
        return _collect(plan, argv, exit_code, timed_out, duration)
    raise AssertionError("unreachable")


def _stop_sync(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM first: SIPp then still writes its statistics. SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=_TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


async def _stop_async(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), _TERM_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
    return await proc.wait()


async def _run_async(plan: _Plan) -> SippResult:
    for attempt in range(_ATTEMPTS):
        with _reserve_ports() as (sip_port, media_port):
            argv = plan.argv(sip_port, media_port)
            started = time.monotonic()
            timed_out = False
            out, err = await asyncio.to_thread(_open_outputs, plan.workdir)
            with out, err:
                proc = await asyncio.create_subprocess_exec(
                    *argv, cwd=plan.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err
                )
                try:
                    exit_code = await asyncio.wait_for(proc.wait(), plan.timeout)
                except TimeoutError:
                    timed_out = True
                    exit_code = await _stop_async(proc)
                except BaseException:
                    # cancelled: do not leave a sipp behind
                    if proc.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                        with contextlib.suppress(BaseException):
                            await asyncio.shield(proc.wait())
                    raise
            duration = time.monotonic() - started
        if not timed_out and attempt < _ATTEMPTS - 1 and _bind_failed(plan, exit_code):
            continue
        return await asyncio.to_thread(_collect, plan, argv, exit_code, timed_out, duration)
    raise AssertionError("unreachable")


def run_caller(
    script: CallerScript,
    *,
    target: str = "127.0.0.1:5060",
    timeout: float = 90,
    workdir: Path | None = None,
    keep_logs: bool | None = None,
    trace_messages: bool = True,
) -> SippResult:
    """Place one call and block until SIPp exits (or ``timeout`` seconds, then kill it).

    ``workdir``: where the scenario, pcap and SIPp logs go (kept). Without it a temporary
    directory is used and removed unless the run failed (``keep_logs`` overrides)."""
    plan = _plan(
        script,
        target=target,
        calls=1,
        rate=SINGLE_CALL_RATE,
        max_concurrent=None,
        timeout=timeout,
        workdir=workdir,
        keep_logs=keep_logs,
        trace_messages=trace_messages,
    )
    return _run_sync(plan)


async def run_caller_async(
    script: CallerScript,
    *,
    target: str = "127.0.0.1:5060",
    timeout: float = 90,
    workdir: Path | None = None,
    keep_logs: bool | None = None,
    trace_messages: bool = True,
) -> SippResult:
    """:func:`run_caller` without blocking the event loop; cancelling it kills sipp."""
    plan = await asyncio.to_thread(
        _plan,
        script,
        target=target,
        calls=1,
        rate=SINGLE_CALL_RATE,
        max_concurrent=None,
        timeout=timeout,
        workdir=workdir,
        keep_logs=keep_logs,
        trace_messages=trace_messages,
    )
    return await _run_async(plan)


def run_load(
    script: CallerScript,
    *,
    rate: float,
    calls: int,
    max_concurrent: int | None = None,
    target: str = "127.0.0.1:5060",
    timeout: float | None = None,
    workdir: Path | None = None,
    keep_logs: bool | None = None,
    trace_messages: bool = False,
) -> SippResult:
    """``calls`` calls of ``script`` at ``rate`` calls/s (``-r``/``-m``), at most
    ``max_concurrent`` at once (``-l``). ``timeout`` defaults to the time the run should take
    plus ``max_call_ms`` plus 30 s."""
    if timeout is None:
        timeout = calls / rate + (script.answer_timeout_ms + script.hangup_ms) / 1000 + 30
    plan = _plan(
        script,
        target=target,
        calls=calls,
        rate=rate,
        max_concurrent=max_concurrent,
        timeout=timeout,
        workdir=workdir,
        keep_logs=keep_logs,
        trace_messages=trace_messages,
    )
    return _run_sync(plan)
