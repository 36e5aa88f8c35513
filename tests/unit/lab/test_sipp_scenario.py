"""lab.sipp without running sipp: scenario XML, the caller's RTP stream, output parsing."""

from __future__ import annotations

import re
import struct
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab import sipp
from lab.errors import LabError
from lab.sipp import (
    CallerScript,
    Dtmf,
    SippResult,
    build_caller_media,
    build_caller_scenario,
    caller_rtp,
    parse_error_log,
    parse_event_log,
    parse_sipp_duration,
    parse_stat_csv,
    quoted_display,
    read_pcap_rtp,
    read_run,
    sipp_escape,
    uri_user,
)

# Every [keyword] a generated scenario may contain; anything else would be user text that SIPp
# would try to expand.
SIPP_KEYWORDS = {
    "branch",
    "call_id",
    "call_number",
    "clock_tick",
    "field0",
    "last_CSeq:",
    "last_Call-ID:",
    "last_From:",
    "last_To:",
    "last_Via:",
    "len",
    "local_ip",
    "local_port",
    "media_ip",
    "media_ip_type",
    "media_port",
    "next_url",
    "peer_tag_param",
    "pid",
    "remote_ip",
    "remote_port",
    "routes",
    "transport",
}


def on_the_wire(text: str) -> str:
    """What SIPp sends for ``text``: its \\xHH escapes decoded (keywords left as they are)."""
    raw = re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m[1], 16)]), text.encode("ascii"))
    return raw.decode("utf-8")


def scenario_tree(script: CallerScript) -> ET.Element:
    return ET.fromstring(build_caller_scenario(script))


def messages(root: ET.Element, tag: str = "send") -> list[str]:
    return [(el.text or "").strip() for el in root.iter(tag) if (el.text or "").strip()]


def invite_of(script: CallerScript) -> str:
    sends = messages(scenario_tree(script))
    assert sends[0].startswith("INVITE ")
    return sends[0]


def header(message: str, name: str) -> str:
    for line in message.splitlines():
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} header in\n{message}")


def recv_bye(root: ET.Element) -> ET.Element:
    (el,) = [el for el in root.iter("recv") if el.get("request") == "BYE" and el.get("timeout")]
    return el


def log_messages(root: ET.Element) -> list[str]:
    return [el.get("message", "") for el in root.iter("log")]


# ---------------------------------------------------------------------------------- scripts


class TestValidation:
    @pytest.mark.parametrize("digits", ["", "12x", "1 2", "E"])
    def test_bad_digits(self, digits: str) -> None:
        with pytest.raises(ValueError):
            Dtmf(digits, 0)

    def test_digit_set(self) -> None:
        Dtmf("0123456789*#ABCDabcd", 0)

    def test_negative_time(self) -> None:
        with pytest.raises(ValueError):
            Dtmf("1", -1)

    def test_spacing_must_leave_a_gap(self) -> None:
        with pytest.raises(ValueError, match="spacing"):
            Dtmf("12", 0, spacing_ms=130, duration_ms=120)

    @pytest.mark.parametrize("field", ["caller_id", "dialled", "from_user"])
    @pytest.mark.parametrize("bad", ["a\r\nVia: evil", "a\nb", "nul\x00"])
    def test_no_control_characters(self, field: str, bad: str) -> None:
        with pytest.raises(ValueError, match="control"):
            CallerScript(**{field: bad})  # type: ignore[arg-type]

    def test_empty_dialled(self) -> None:
        with pytest.raises(ValueError):
            CallerScript(dialled="")

    def test_hangup_within_max_call(self) -> None:
        with pytest.raises(ValueError, match="hangup_after_ms"):
            CallerScript(hangup_after_ms=70000, max_call_ms=60000)

    def test_dtmf_after_hangup(self) -> None:
        with pytest.raises(ValueError, match="after the caller hangs up"):
            CallerScript(dtmf=(Dtmf("12", 900),), hangup_after_ms=1000)

    def test_dtmf_overlap(self) -> None:
        with pytest.raises(ValueError, match="overlap"):
            CallerScript(dtmf=(Dtmf("12", 1000), Dtmf("3", 1300)))

    def test_dtmf_list_becomes_tuple(self) -> None:
        script = CallerScript(dtmf=[Dtmf("1", 0)])  # type: ignore[arg-type]
        assert script.dtmf == (Dtmf("1", 0),)

    @pytest.mark.parametrize("name", ["From", "call-id", "Content-Length", "Bad Name", "X:Y"])
    def test_header_names(self, name: str) -> None:
        with pytest.raises(ValueError):
            CallerScript(headers={name: "v"})

    def test_header_value_injection(self) -> None:
        with pytest.raises(ValueError, match="control"):
            CallerScript(headers={"X-Test": "a\r\nBYE sip:x SIP/2.0"})


# ---------------------------------------------------------------------------------- escaping


class TestEscaping:
    def test_sipp_escape_brackets_backslash_nonascii(self) -> None:
        assert sipp_escape("[call_id]") == "\\x5Bcall_id\\x5D"
        assert sipp_escape("a\\xb") == "a\\x5Cxb"
        assert sipp_escape("é") == "\\xC3\\xA9"
        assert sipp_escape("+1555 ok") == "+1555 ok"

    def test_uri_user_percent_encodes(self) -> None:
        assert uri_user("+15551230001") == "+15551230001"
        assert uri_user("dtmf-echo") == "dtmf-echo"
        assert uri_user('a b"<>@:[') == "a%20b%22%3C%3E%40%3A%5B"

    def test_quoted_display(self) -> None:
        assert quoted_display("Bob") == '"Bob"'
        assert on_the_wire(quoted_display('Bob "B" \\')) == '"Bob \\"B\\" \\\\"'
        # a backslash never reaches SIPp bare: "\\x41" must not become "A"
        assert on_the_wire(quoted_display("\\x41")) == '"\\\\x41"'


# ---------------------------------------------------------------------------------- scenario


class TestScenario:
    def test_is_well_formed_ascii_xml(self) -> None:
        xml = build_caller_scenario(CallerScript(caller_id="Zoë [1]"))
        xml.encode("ascii")
        assert ET.fromstring(xml).tag == "scenario"

    def test_invite_defaults(self) -> None:
        invite = invite_of(CallerScript())
        assert invite.splitlines()[0] == "INVITE sip:5550100@[remote_ip]:[remote_port] SIP/2.0"
        assert (
            header(invite, "From")
            == '"+15551230001" <sip:+15551230001@[local_ip]:[local_port]>;tag=[pid]IVRLAB[call_number]'
        )
        assert header(invite, "To") == "<sip:5550100@[remote_ip]:[remote_port]>"
        assert "P-Asserted-Identity" not in invite
        assert "Content-Length: [len]" in invite

    def test_from_user_override_keeps_caller_id(self) -> None:
        invite = invite_of(CallerScript(caller_id="+15557654321", from_user="lab", dialled="dtmf-echo"))
        assert invite.startswith("INVITE sip:dtmf-echo@")
        assert header(invite, "From").startswith('"+15557654321" <sip:lab@[local_ip]:[local_port]>')
        assert header(invite, "Contact") == "<sip:lab@[local_ip]:[local_port]>"
        assert header(invite, "P-Asserted-Identity") == '"+15557654321" <sip:+15557654321@[local_ip]>'

    def test_pooled_caller_ids_come_from_the_injection_file(self) -> None:
        script = CallerScript(from_user="bench", caller_ids=("+15552000001", "+15553000000"), dialled="bench-ivr")
        invite = invite_of(script)
        assert header(invite, "From").startswith('"[field0]" <sip:bench@[local_ip]:[local_port]>;tag=')
        assert header(invite, "Contact") == "<sip:bench@[local_ip]:[local_port]>"
        assert header(invite, "P-Asserted-Identity") == '"[field0]" <sip:[field0]@[local_ip]>'
        assert "+1555" not in build_caller_scenario(script)  # the numbers are in the file, not the XML

    def test_pooled_caller_ids_without_from_user_are_the_from_user(self) -> None:
        invite = invite_of(CallerScript(caller_ids=("+15552000001",)))
        assert header(invite, "From").startswith('"[field0]" <sip:[field0]@[local_ip]:[local_port]>;tag=')
        assert "P-Asserted-Identity" not in invite

    def test_injection_file_is_sequential_one_line_per_call(self) -> None:
        assert sipp.build_injection_file(["+15552000001", "+15553000000"]) == (
            "SEQUENTIAL\n+15552000001;\n+15553000000;\n"
        )

    @pytest.mark.parametrize("bad", ["", "+1 555", "a;b", "[call_id]", "x\\41", "é", "+1555\n"])
    def test_pooled_caller_ids_must_be_plain(self, bad: str) -> None:
        with pytest.raises(ValueError, match="caller_ids"):
            CallerScript(caller_ids=("+15552000001", bad))

    def test_sdp_uses_sipp_media_address(self) -> None:
        invite = invite_of(CallerScript())
        body = invite.split("\n\n", 1)[1]
        assert "c=IN IP[media_ip_type] [media_ip]" in body
        assert "m=audio [media_port] RTP/AVP 0 101" in body
        assert "a=rtpmap:101 telephone-event/8000" in body

    def test_hostile_caller_id_is_escaped(self) -> None:
        script = CallerScript(caller_id='Eve "[call_id]" \\x41 é', dialled="[service]", from_user="x]]>y")
        xml = build_caller_scenario(script)
        root = ET.fromstring(xml)  # no CDATA break-out
        invite = messages(root)[0]
        assert on_the_wire(header(invite, "From")).startswith('"Eve \\"[call_id]\\" \\\\x41 é" <sip:x%5D%5D%3Ey@')
        assert invite.startswith("INVITE sip:%5Bservice%5D@")
        for text in messages(root):
            for keyword in re.findall(r"\[([^\]]*)\]", text):
                assert keyword in SIPP_KEYWORDS, keyword

    def test_extra_headers_are_literal(self) -> None:
        invite = invite_of(CallerScript(headers={"X-Test-Id": "run [7]", "Subject": "hi"}))
        assert header(invite, "X-Test-Id") == "run \\x5B7\\x5D"
        assert header(invite, "Subject") == "hi"
        assert invite.index("X-Test-Id") < invite.index("Content-Type")

    def test_wait_for_ivr_bye_branch(self) -> None:
        root = scenario_tree(CallerScript(max_call_ms=45000))
        bye = recv_bye(root)
        assert bye.get("timeout") == "45000"
        assert bye.get("ontimeout") == "caller_hangup"
        logs = log_messages(root)
        assert any("event=hangup by=ivr" in m for m in logs)
        assert any("event=hangup by=caller reason=max_call" in m for m in logs)
        assert not any("reason=scripted" in m for m in logs)

    def test_caller_hangs_up_branch(self) -> None:
        root = scenario_tree(CallerScript(hangup_after_ms=3000))
        assert recv_bye(root).get("timeout") == "3000"
        assert any("event=hangup by=caller reason=scripted" in m for m in log_messages(root))

    def test_flow_order(self) -> None:
        """INVITE, provisional responses optional, 200 with a timeout, ACK, media, then the BYE race."""
        root = scenario_tree(CallerScript(answer_timeout_ms=12000))
        steps = []
        for el in root:
            if el.tag == "send":
                steps.append("send " + (el.text or "").strip().split()[0])
            elif el.tag == "recv":
                steps.append(f"recv {el.get('response') or el.get('request')}{'?' if el.get('optional') else ''}")
            elif el.tag == "label":
                steps.append(f"label {el.get('id')}")
            elif el.find("action/exec") is not None:
                steps.append("play " + el.find("action/exec").get("play_pcap_audio", ""))  # type: ignore[union-attr]
        assert steps[:9] == [
            "send INVITE",
            "recv 100?",
            "recv 180?",
            "recv 181?",
            "recv 182?",
            "recv 183?",
            "recv 200",
            "send ACK",
            "play caller_media.pcap",
        ]
        assert steps[9:] == [
            "recv BYE",
            "send SIP/2.0",
            "label caller_hangup",
            "send BYE",
            "recv BYE?",
            "recv 200",
            "label glare",
            "send SIP/2.0",
            "recv 481?",
            "recv 200",
            "label end",
        ]
        ok = next(el for el in root.iter("recv") if el.get("response") == "200")
        assert ok.get("timeout") == "12000"
        assert ok.get("rrs") == "true"

    def test_in_dialog_requests_follow_contact_and_tags(self) -> None:
        sends = messages(scenario_tree(CallerScript()))
        ack = next(m for m in sends if m.startswith("ACK"))
        bye = next(m for m in sends if m.startswith("BYE"))
        for message in (ack, bye):
            assert message.splitlines()[0].endswith("[next_url] SIP/2.0")
            assert header(message, "To").endswith("[peer_tag_param]")
            assert "[routes]" in message
        assert header(bye, "CSeq") == "2 BYE"

    def test_answers_the_ivr_bye(self) -> None:
        sends = messages(scenario_tree(CallerScript()))
        ok = next(m for m in sends if m.startswith("SIP/2.0 200"))
        assert "[last_Via:]" in ok and "[last_CSeq:]" in ok

    def test_media_file_name_checked(self) -> None:
        with pytest.raises(ValueError):
            build_caller_scenario(CallerScript(), media_file='x" evil="1')


# ---------------------------------------------------------------------------------- media


def decode(data: bytes) -> list[tuple[float, int, bool, int, int, int, bytes]]:
    """(t, payload type, marker, seq, timestamp, ssrc, payload) from build_caller_media bytes."""
    out = []
    for t, rtp in read_pcap_rtp(data):
        b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", rtp[:12])
        assert b0 == 0x80
        out.append((t, b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, rtp[12:]))
    return out


def dtmf_events(packets: list[tuple[float, int, bool, int, int, int, bytes]]) -> list[tuple[str, float, int]]:
    """(digit, start time, duration in samples) per event, as a receiver would (dedup by timestamp)."""
    names = {v: k for k, v in sipp.DTMF_EVENTS.items()}
    starts: dict[int, float] = {}
    ended: dict[int, tuple[str, float, int]] = {}
    for t, pt, _marker, _seq, ts, _ssrc, payload in packets:
        if pt != 101:
            continue
        event, flags, duration = struct.unpack("!BBH", payload)
        starts.setdefault(ts, t)
        if flags & 0x80 and ts not in ended:
            ended[ts] = (names[event], starts[ts], duration)
    return [ended[ts] for ts in sorted(ended)]


class TestMedia:
    def test_pcap_header_and_frames(self) -> None:
        data = build_caller_media(CallerScript(hangup_after_ms=1000))
        magic, major, minor, _tz, _sig, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
        assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 65535, 1)
        frame = data[24 + 16 :]
        assert frame[12:14] == b"\x08\x00"  # IPv4
        ip_header = frame[14:34]
        assert sipp._ip_checksum(ip_header) == 0  # a valid header sums to 0xFFFF
        assert ip_header[9] == 17  # UDP

    def test_silence_from_the_answer_to_the_hangup_plus_tail(self) -> None:
        packets = decode(build_caller_media(CallerScript(hangup_after_ms=1000)))
        assert {p[1] for p in packets} == {0}
        assert len(packets) == (1000 + sipp.MEDIA_TAIL_MS) // 20
        assert packets[0][0] == 0.0 and packets[0][2] is True
        assert all(p[6] == b"\xff" * 160 for p in packets)
        assert packets[-1][0] == pytest.approx((len(packets) - 1) * 0.020)

    def test_wait_for_bye_streams_until_max_call(self) -> None:
        packets = decode(build_caller_media(CallerScript(max_call_ms=3000)))
        assert len(packets) == (3000 + sipp.MEDIA_TAIL_MS) // 20

    def test_one_stream(self) -> None:
        packets = decode(build_caller_media(CallerScript(dtmf=(Dtmf("1234", 500),), hangup_after_ms=3000)))
        assert len({p[5] for p in packets}) == 1
        seqs = sorted({p[3] for p in packets})
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert [p[3] for p in packets] == sorted(p[3] for p in packets)
        assert [p[4] for p in packets] == sorted(p[4] for p in packets)
        audio = [p for p in packets if p[1] == 0]
        assert all(p[4] == audio[0][4] + round(p[0] * 8000) for p in audio)

    def test_dtmf_at_the_right_moments(self) -> None:
        script = CallerScript(dtmf=(Dtmf("1234", 1500), Dtmf("#", 4000)), hangup_after_ms=6000)
        events = dtmf_events(decode(build_caller_media(script)))
        assert [e[0] for e in events] == ["1", "2", "3", "4", "#"]
        # on the 20 ms packet grid: within 10 ms of asked
        assert [e[1] * 1000 for e in events] == pytest.approx([1500, 1750, 2000, 2250, 4000], abs=10)
        assert all(e[2] == 960 for e in events)  # 120 ms

    def test_digit_spacing_and_duration(self) -> None:
        script = CallerScript(dtmf=(Dtmf("9*", 100, spacing_ms=400, duration_ms=200),), hangup_after_ms=2000)
        events = dtmf_events(decode(build_caller_media(script)))
        assert [(e[0], round(e[1] * 1000), e[2]) for e in events] == [("9", 100, 1600), ("*", 500, 1600)]

    def test_repeated_digits_are_distinct_events(self) -> None:
        events = dtmf_events(decode(build_caller_media(CallerScript(dtmf=(Dtmf("1111", 0),), hangup_after_ms=2000))))
        assert [e[0] for e in events] == ["1", "1", "1", "1"]

    def test_event_packets(self) -> None:
        packets = decode(build_caller_media(CallerScript(dtmf=(Dtmf("5", 200),), hangup_after_ms=1000)))
        event = [p for p in packets if p[1] == 101]
        assert [round(p[0] * 1000) for p in event] == [200, 220, 240, 260, 280, 300, 300, 300]
        assert [p[2] for p in event] == [True] + [False] * 7
        assert len({p[4] for p in event}) == 1  # one timestamp: the event start
        payloads = [struct.unpack("!BBH", p[6]) for p in event]
        assert [d for _e, _f, d in payloads] == [160, 320, 480, 640, 800, 960, 960, 960]
        assert [bool(f & 0x80) for _e, f, _d in payloads] == [False] * 5 + [True] * 3
        assert {e for e, _f, _d in payloads} == {5}
        assert {f & 0x3F for _e, f, _d in payloads} == {10}
        assert len({p[3] for p in event[-3:]}) == 1  # end packet retransmitted with the same seq
        # audio is muted while the key is down, and its timestamps carry on afterwards
        assert not [p for p in packets if p[1] == 0 and 0.2 <= p[0] < 0.32]
        after = next(p for p in packets if p[1] == 0 and p[0] >= 0.32)
        assert after[4] == event[0][4] + 960

    def test_audio_then_silence(self) -> None:
        audio = bytes(range(256)) * 2  # 512 bytes = 3.2 packets
        packets = caller_rtp(CallerScript(hangup_after_ms=200), audio)
        assert b"".join(p.payload for p in packets[:4])[:512] == audio
        assert packets[3].payload[32:] == b"\xff" * 128
        assert packets[4].payload == b"\xff" * 160

    def test_raw_ulaw_audio_is_read_as_is(self, tmp_path: Path) -> None:
        path = tmp_path / "voice.ul"
        path.write_bytes(b"\x01\x02")
        assert sipp.load_audio_ulaw(path) == b"\x01\x02"


# ---------------------------------------------------------------------------------- parsing

STAT_HEADER = (
    "StartTime;LastResetTime;CurrentTime;ElapsedTime(P);ElapsedTime(C);TargetRate;CallRate(P);CallRate(C);"
    "IncomingCall(P);IncomingCall(C);OutgoingCall(P);OutgoingCall(C);TotalCallCreated;CurrentCall;"
    "SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);FailedCannotSendMessage(P);"
    "FailedCannotSendMessage(C);FailedMaxUDPRetrans(P);FailedMaxUDPRetrans(C);FailedTcpConnect(P);"
    "FailedTcpConnect(C);FailedTcpClosed(P);FailedTcpClosed(C);FailedUnexpectedMessage(P);"
    "FailedUnexpectedMessage(C);FailedCallRejected(P);FailedCallRejected(C);FailedCmdNotSent(P);"
    "FailedCmdNotSent(C);FailedRegexpDoesntMatch(P);FailedRegexpDoesntMatch(C);FailedRegexpShouldntMatch(P);"
    "FailedRegexpShouldntMatch(C);FailedRegexpHdrNotFound(P);FailedRegexpHdrNotFound(C);"
    "FailedOutboundCongestion(P);FailedOutboundCongestion(C);FailedTimeoutOnRecv(P);FailedTimeoutOnRecv(C);"
    "FailedTimeoutOnSend(P);FailedTimeoutOnSend(C);FailedTestDoesntMatch(P);FailedTestDoesntMatch(C);"
    "FailedTestShouldntMatch(P);FailedTestShouldntMatch(C);FailedStrcmpDoesntMatch(P);"
    "FailedStrcmpDoesntMatch(C);FailedStrcmpShouldntMatch(P);FailedStrcmpShouldntMatch(C);OutOfCallMsgs(P);"
    "OutOfCallMsgs(C);DeadCallMsgs(P);DeadCallMsgs(C);Retransmissions(P);Retransmissions(C);"
    "AutoAnswered(P);AutoAnswered(C);Warnings(P);Warnings(C);FatalErrors(P);FatalErrors(C);"
    "WatchdogMajor(P);WatchdogMajor(C);WatchdogMinor(P);WatchdogMinor(C);ResponseTime1(P);ResponseTime1(C);"
    "ResponseTime1StDev(P);ResponseTime1StDev(C);CallLength(P);CallLength(C);CallLengthStDev(P);"
    "CallLengthStDev(C);"
)


def stat_row(**values: str) -> str:
    """A row in SIPp 3.6.1's format: tab-separated timestamps, zeros elsewhere."""
    names = STAT_HEADER.rstrip(";").split(";")
    stamp = "2026-11-25\t21:58:20.711962\t1795643900.711962"
    cells = []
    for name in names:
        if name in values:
            cells.append(values[name])
        elif name.endswith("Time") or name == "LastResetTime":
            cells.append(stamp)
        elif name.startswith("ElapsedTime"):
            cells.append("00:00:02")
        elif name.startswith(("ResponseTime", "CallLength")):
            cells.append("00:00:00:000000")
        else:
            cells.append("0")
    return ";".join(cells) + ";"


# A real 3.6.1 -trace_err file after a 486 (the message is quoted over several lines) plus the
# notice an ontimeout jump leaves.
ERROR_LOG = """The following events occurred:
2026-11-25\t21:54:04.866089\t1795643644.866089: Aborting call on unexpected message for Call-Id '1-12421@127.0.0.1': while expecting '200' (index 7), received 'SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-12421-1-1
Call-ID: 1-12421@127.0.0.1
CSeq: 1 INVITE
Content-Length: 0

'
2026-11-25\t21:53:56.494543\t1795643636.494543: Call-Id: 3-12328@127.0.0.1, receive timeout on message t:7, jumping to label 9
"""

EVENT_LOG = """IVRLAB call=1 event=start tick=1004
IVRLAB call=2 event=start tick=1104
IVRLAB call=1 event=answered tick=1016
IVRLAB call=2 event=answered tick=1110
IVRLAB call=1 event=hangup by=ivr tick=2516
IVRLAB call=1 event=end tick=2520
IVRLAB call=2 event=hangup by=caller reason=max_call tick=3110
IVRLAB call=2 event=glare tick=3111
IVRLAB call=2 event=end tick=3112
some other line
"""


class TestParsing:
    def test_stat_csv_last_row(self) -> None:
        text = "\n".join(
            [
                STAT_HEADER,
                stat_row(),
                stat_row(**{"SuccessfulCall(C)": "19", "FailedCall(C)": "1", "TotalCallCreated": "20"}),
                "",
            ]
        )
        stats = parse_stat_csv(text)
        assert stats["SuccessfulCall(C)"] == "19"
        assert stats["FailedCall(C)"] == "1"
        assert stats["StartTime"].startswith("2026-11-25\t")
        assert sipp.stat_int(stats, "TotalCallCreated") == 20
        assert sipp.stat_int(stats, "Missing") == 0
        assert sipp.stat_int(stats, "StartTime") == 0

    def test_stat_csv_empty(self) -> None:
        assert parse_stat_csv("") == {}
        assert parse_stat_csv(STAT_HEADER + "\n") == {}

    def test_durations(self) -> None:
        assert parse_sipp_duration("00:00:01:516000") == pytest.approx(1.516)
        assert parse_sipp_duration("01:02:03") == 3723.0
        assert parse_sipp_duration("bogus") is None

    def test_error_log(self) -> None:
        events = parse_error_log(ERROR_LOG)
        assert len(events) == 1  # the ontimeout notice is ours, not an error
        assert events[0].startswith("Aborting call on unexpected message")
        assert "SIP/2.0 486 Busy Here" in events[0]
        assert "CSeq: 1 INVITE" in events[0]

    def test_event_log(self) -> None:
        calls = parse_event_log(EVENT_LOG)
        assert sorted(calls) == [1, 2]
        one, two = calls[1], calls[2]
        assert (one.answer_ms, one.length_ms, one.hangup_by, one.hangup_reason) == (12, 1504, "ivr", None)
        assert (two.hangup_by, two.hangup_reason, two.glare, two.length_ms) == ("caller", "max_call", True, 2002)


def write_run(tmp_path: Path, *, stats: dict[str, str], events: str = "", errors: str = "") -> Path:
    (tmp_path / sipp.STAT_FILE).write_text(STAT_HEADER + "\n" + stat_row(**stats) + "\n")
    (tmp_path / sipp.EVENTS_FILE).write_text(events)
    (tmp_path / sipp.ERRORS_FILE).write_text(errors)
    (tmp_path / sipp.STDERR_FILE).write_text("Resolving remote host '127.0.0.1'... Done.\n")
    return tmp_path


class TestResult:
    def test_success(self, tmp_path: Path) -> None:
        stats = {"SuccessfulCall(C)": "1", "TotalCallCreated": "1"}
        events = "IVRLAB call=1 event=start tick=10\nIVRLAB call=1 event=answered tick=30\n"
        events += "IVRLAB call=1 event=hangup by=caller reason=scripted tick=2030\nIVRLAB call=1 event=end tick=2031\n"
        result = read_run(write_run(tmp_path, stats=stats, events=events), calls_requested=1, exit_code=0)
        assert result.ok
        assert (result.successful, result.failed, result.calls_created) == (1, 0, 1)
        assert result.who_hung_up == "caller"
        assert result.max_call_reached == 0
        assert result.answer_times_ms == (20,)
        assert result.call_lengths_ms == (2001,)
        assert (result.answer_time_avg_ms, result.call_length_avg_ms) == (20, 2001)
        assert result.failure_counters == {}
        result.raise_for_failure()

    def test_max_call_is_reported(self, tmp_path: Path) -> None:
        events = "IVRLAB call=1 event=hangup by=caller reason=max_call tick=60000\n"
        result = read_run(
            write_run(tmp_path, stats={"SuccessfulCall(C)": "1"}, events=events), calls_requested=1, exit_code=0
        )
        assert result.ok  # SIP-wise the call was fine
        assert result.who_hung_up == "caller"
        assert result.max_call_reached == 1
        assert "max_call_ms" in result.summary()

    def test_failure_raises_with_sipp_errors(self, tmp_path: Path) -> None:
        stats = {"FailedCall(C)": "1", "FailedUnexpectedMessage(C)": "1", "TotalCallCreated": "1"}
        result = read_run(write_run(tmp_path, stats=stats, errors=ERROR_LOG), calls_requested=1, exit_code=1)
        assert not result.ok
        assert result.failure_counters == {"FailedUnexpectedMessage": 1}
        assert result.who_hung_up is None
        with pytest.raises(LabError) as info:
            result.raise_for_failure()
        text = str(info.value)
        assert "exit 1 (at least one call failed)" in text
        assert "486 Busy Here" in text
        assert "FailedUnexpectedMessage=1" in text
        assert "jumping to label" not in text
        assert str(tmp_path) in text

    def test_mixed_hangups(self, tmp_path: Path) -> None:
        result = read_run(
            write_run(tmp_path, stats={"SuccessfulCall(C)": "2"}, events=EVENT_LOG), calls_requested=2, exit_code=0
        )
        assert result.ok
        assert result.who_hung_up is None
        assert result.hangups == {"ivr": 1, "caller": 1}
        assert result.call_length_avg_ms == (1504 + 2002) / 2

    def test_exit_zero_but_killed_is_not_ok(self, tmp_path: Path) -> None:
        # SIPp 3.6 exits 0 on SIGTERM
        result = read_run(
            write_run(tmp_path, stats={"TotalCallCreated": "1"}), calls_requested=1, exit_code=0, timed_out=True
        )
        assert not result.ok
        with pytest.raises(LabError, match="killed after the timeout"):
            result.raise_for_failure()

    def test_fewer_successes_than_requested_is_not_ok(self, tmp_path: Path) -> None:
        result = read_run(write_run(tmp_path, stats={"SuccessfulCall(C)": "19"}), calls_requested=20, exit_code=0)
        assert not result.ok

    @pytest.mark.parametrize(
        ("code", "meaning"),
        [
            (0, "all calls"),
            (1, "at least one"),
            (97, "internal command"),
            (99, "without calls"),
            (255, "fatal"),
            (254, "binding"),
        ],
    )
    def test_exit_meanings(self, code: int, meaning: str) -> None:
        result = SippResult(
            ok=False, exit_code=code, successful=0, failed=0, calls_created=0, who_hung_up=None, duration_s=0
        )
        assert meaning in result.exit_meaning
        assert result.answer_time_avg_ms is None and result.call_length_avg_ms is None


# ---------------------------------------------------------------------------------- running


class TestCommandLine:
    def plan(self, tmp_path: Path, **kwargs: object) -> sipp._Plan:
        args: dict[str, object] = {
            "target": "127.0.0.1:5060",
            "calls": 1,
            "rate": 100.0,
            "max_concurrent": None,
            "timeout": 10.0,
            "workdir": tmp_path,
            "keep_logs": None,
            "trace_messages": True,
        }
        args.update(kwargs)
        return sipp._plan(CallerScript(), **args)  # type: ignore[arg-type]

    @pytest.fixture(autouse=True)
    def fake_sipp(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("IVR_SIPP", "/usr/bin/sipp")

    def test_argv(self, tmp_path: Path) -> None:
        argv = self.plan(tmp_path).argv(40000, 40002)
        joined = " ".join(argv)
        assert argv[:2] == ["/usr/bin/sipp", "127.0.0.1:5060"]
        for flags in (
            "-i 127.0.0.1 -p 40000",
            "-mi 127.0.0.1 -mp 40002",
            "-ci 127.0.0.1",
            "-nostdin",
            "-m 1",
            "-l 1",
            f"-trace_stat -stf {tmp_path / 'stat.csv'}",
            f"-trace_err -error_file {tmp_path / 'errors.log'}",
            f"-trace_logs -log_file {tmp_path / 'events.log'}",
            "-trace_msg",
        ):
            assert flags in joined
        assert "-bg" not in argv

    def test_caller_pool_is_written_and_passed_with_inf(self, tmp_path: Path) -> None:
        script = CallerScript(from_user="bench", caller_ids=("+15552000001", "+15552000002"))
        plan = sipp._plan(
            script,
            target="127.0.0.1:5060",
            calls=2,
            rate=10.0,
            max_concurrent=None,
            timeout=10.0,
            workdir=tmp_path,
            keep_logs=None,
            trace_messages=False,
        )
        assert f"-inf {tmp_path / sipp.CALLERS_FILE}" in " ".join(plan.argv(1, 3))
        assert (tmp_path / sipp.CALLERS_FILE).read_text() == "SEQUENTIAL\n+15552000001;\n+15552000002;\n"
        assert "-inf" not in self.plan(tmp_path).argv(1, 3)

    def test_load_argv(self, tmp_path: Path) -> None:
        argv = " ".join(self.plan(tmp_path, calls=20, rate=10.0, max_concurrent=5, trace_messages=False).argv(1, 3))
        assert "-m 20" in argv and "-r 10" in argv and "-l 5" in argv
        assert "-trace_msg" not in argv

    def test_relative_workdir_is_made_absolute(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        plan = self.plan(tmp_path, workdir=Path("runs/one"))
        assert plan.workdir == tmp_path / "runs/one"
        assert str(tmp_path / "runs/one" / sipp.STAT_FILE) in plan.argv(1, 3)

    def test_own_workdir_removed_when_preparing_fails(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        script = CallerScript(audio=tmp_path / "missing.wav")
        with pytest.raises(LabError):
            sipp._plan(
                script,
                target="127.0.0.1",
                calls=1,
                rate=1,
                max_concurrent=None,
                timeout=1,
                workdir=None,
                keep_logs=None,
                trace_messages=False,
            )
        assert list(tmp_path.iterdir()) == []

    def test_files_written(self, tmp_path: Path) -> None:
        plan = self.plan(tmp_path)
        assert ET.parse(plan.scenario).getroot().tag == "scenario"
        assert (tmp_path / sipp.MEDIA_FILE).read_bytes()[:4] == struct.pack("<I", 0xA1B2C3D4)

    @pytest.mark.parametrize("target", ["10.0.0.1:5060", "localhost:5060", "0.0.0.0", "127.0.0.1:x", "127.0.0.1:0"])
    def test_only_loopback(self, tmp_path: Path, target: str) -> None:
        with pytest.raises(ValueError):
            self.plan(tmp_path, target=target)

    def test_default_port(self, tmp_path: Path) -> None:
        assert self.plan(tmp_path, target="127.0.0.1").argv(1, 3)[1] == "127.0.0.1"

    @pytest.mark.parametrize(("name", "value"), [("calls", 0), ("rate", 0.0), ("max_concurrent", 0), ("timeout", 0.0)])
    def test_bad_numbers(self, tmp_path: Path, name: str, value: object) -> None:
        with pytest.raises(ValueError):
            self.plan(tmp_path, **{name: value})

    def test_missing_sipp(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.delenv("IVR_SIPP")
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(LabError, match="sipp not found"):
            sipp.find_sipp()

    def test_reserved_ports_are_distinct_and_free(self) -> None:
        with sipp._reserve_ports() as (a_sip, a_media), sipp._reserve_ports() as (b_sip, b_media):
            held = {a_sip, a_media, a_media + 2, b_sip, b_media, b_media + 2}
            assert len(held) == 6
            assert all(sipp._bindable(p) for p in held)
        assert not sipp._reserved_ports
