"""The real Asterisk 22 lab: provisioning, the product's config, loopback-only sockets, real calls.

Needs root (chroot) and, the first time on a machine, network access to the Debian archive
(about a minute to build the cached sid root). After that the whole module runs in seconds.
"""

from __future__ import annotations

import random
import re
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.asterisk import AMI_PORT, SIP_PORT, WSS_PORT, AsteriskLab
from lab.require import require

pytestmark = pytest.mark.integration

AGENTS = ["agent1001", "agent1002", "agent1003", "agent1004"]
QUEUES = ["main", "billing", "support", "outage", "sales"]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def lab(lab_lock: None) -> Iterator[AsteriskLab]:
    """The lab Asterisk, started here unless one of this root is already running (an earlier module
    of this session started it: this session holds the lab lock, so it is ours to use and to
    restart, and is left running as found)."""
    require("root")
    the_lab = AsteriskLab(progress=lambda line: print(f"[lab] {line}"))
    owned = not the_lab.is_running()
    if owned:
        the_lab.provision()
        the_lab.install_config()
        started = time.monotonic()
        the_lab.start()
        print(f"[lab] Asterisk ready in {time.monotonic() - started:.1f}s")
    try:
        yield the_lab
    finally:
        if owned:
            the_lab.stop()


def _sipp(
    lab: AsteriskLab,
    tmp: Path,
    service: str,
    *,
    from_user: str = "sipp",
    pause_ms: int = 1000,
    background: bool = False,
) -> subprocess.Popen[str]:
    """One call with SIPp's stock "uac" scenario, optionally with another From user."""
    require("sipp")
    # `sipp -sd` dumps the built-in scenario and exits 99: judge by the output, not the exit code.
    scenario = subprocess.run(["sipp", "-sd", "uac"], capture_output=True, text=True, check=False).stdout
    assert "sip:sipp@" in scenario, "cannot read SIPp's stock uac scenario"
    path = tmp / f"uac-{from_user}.xml"
    path.write_text(scenario.replace("sip:sipp@", f"sip:{from_user}@"))
    command = [
        "sipp",
        f"127.0.0.1:{SIP_PORT}",
        "-sf",
        str(path),
        "-s",
        service,
        "-i",
        "127.0.0.1",
        "-p",
        str(_free_udp_port()),
        "-mp",
        str(_free_udp_port()),
        "-m",
        "1",
        "-l",
        "1",
        "-d",
        str(pause_ms),
        "-recv_timeout",
        "10000",
        "-timeout",
        "20s",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(_error_file(tmp, from_user, service)),
    ]
    with _error_file(tmp, from_user, service).with_suffix(".out").open("w") as out:  # SIPp's screen
        proc = subprocess.Popen(
            command, cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True
        )
    if not background:
        proc.wait(timeout=30)
    return proc


def _error_file(tmp: Path, from_user: str, service: str) -> Path:
    return tmp / f"errors-{from_user}-{service.replace('*', 'star')}.log"


def _errors(tmp: Path, from_user: str, service: str) -> str:
    path = _error_file(tmp, from_user, service)
    return path.read_text() if path.exists() else ""


def _asterisk_sockets(lab: AsteriskLab, proto: str) -> list[tuple[str, int]]:
    """(address, port) of every socket of the lab's Asterisk processes, from `ss -l{t,u}np`."""
    pids = {str(pid) for pid in lab._asterisk_pids()}
    out = subprocess.run(["ss", "-Hln" + proto + "p"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        owners = set(re.findall(r"pid=(\d+)", line))
        if owners & pids:
            local = line.split()[3]
            address, _, port = local.rpartition(":")
            found.append((address.strip("[]"), int(port)))
    return found


def test_ami_login_with_the_secret_and_refuses_a_wrong_one(lab: AsteriskLab) -> None:
    assert lab.ami_login_succeeds()
    assert not lab.ami_login_succeeds(secret="not-the-secret-" + "x" * 8)
    assert not lab.ami_login_succeeds(username="admin", secret=lab.ami_secret)


def test_it_is_asterisk_22(lab: AsteriskLab) -> None:
    assert re.match(r"Asterisk 22\.", lab.cli("core show version"))
    stamp = lab.read_stamp()
    assert stamp is not None and str(stamp["versions"]["asterisk"]).startswith("1:22.")  # type: ignore[index]


def test_trunk_agent_and_lab_endpoints_are_loaded(lab: AsteriskLab) -> None:
    endpoints = lab.cli("pjsip show endpoints")
    for name in ["trunk", "lab", *AGENTS]:
        assert re.search(rf"Endpoint:\s+{name}\b", endpoints), name
    for name in AGENTS:
        assert re.search(rf"InAuth:\s+{name}-auth/{name}\b", endpoints), f"{name} has no auth"
    assert re.search(r"Match:\s+127\.0\.0\.1/32", endpoints)
    assert set(lab.agent_passwords) == set(AGENTS)


def test_calls_whose_audio_stopped_are_hung_up(lab: AsteriskLab) -> None:
    # A BYE the carrier never sent must not leave a caller in a queue for ever: every endpoint
    # that carries calls hangs up after 60 s without RTP (600 s on hold).
    for name in ["trunk", "lab", *AGENTS, *(f"{a}-webrtc" for a in AGENTS)]:
        shown = lab.cli(f"pjsip show endpoint {name}")
        assert re.search(r"^\s*rtp_timeout\s*:\s*60\s*$", shown, re.M), name
        assert re.search(r"^\s*rtp_timeout_hold\s*:\s*600\s*$", shown, re.M), name


def test_required_modules_are_running(lab: AsteriskLab) -> None:
    modules = lab.cli("module show")
    running = set(re.findall(r"^(\S+)\.so\s.*\bRunning\b", modules, re.MULTILINE))
    required = {
        "res_agi",
        "app_queue",
        "chan_pjsip",
        "res_pjsip",
        "res_pjsip_session",
        "res_rtp_asterisk",
        "res_pjsip_endpoint_identifier_user",
        "res_pjsip_endpoint_identifier_ip",
        "res_pjsip_authenticator_digest",
        "format_wav",
        "format_gsm",
        "codec_ulaw",
        "codec_alaw",
        "res_audiosocket",
        "app_audiosocket",
        "chan_audiosocket",
        "res_musiconhold",
        "app_read",
        "app_playback",
        "app_userevent",
        "app_echo",
        "func_strings",
        "func_logic",
        # agents' browser softphones: SIP over WSS, DTLS-SRTP, opus, per-login auth from astdb
        "res_http_websocket",
        "res_pjsip_transport_websocket",
        "res_srtp",
        "res_sorcery_astdb",
        "codec_opus_open_source",
    }
    assert required - running == set()
    # [net] modules of modules.conf must stay off: they would listen on 0.0.0.0.
    assert {"chan_iax2", "pbx_dundi", "chan_unistim"} & running == set()


def test_queues_exist_without_static_members(lab: AsteriskLab) -> None:
    shown = lab.cli("queue show")
    for queue in QUEUES:
        block = re.search(rf"^{queue} has 0 calls.*?\n\n", shown + "\n\n", re.MULTILINE | re.DOTALL)
        assert block, f"queue {queue} missing"
        assert "No Members" in block.group(0)
        assert "'rrmemory' strategy" in block.group(0)


def test_start_up_log_has_no_errors_or_warnings(lab: AsteriskLab) -> None:
    # start() truncates the log: everything up to "Asterisk Ready." is this start-up (calls made by
    # other tests add their expected fallback WARNINGs after it).
    log = lab.log_path.read_text()
    assert "Asterisk Ready." in log
    startup = log.split("Asterisk Ready.")[0]
    bad = [line for line in startup.splitlines() if re.search(r"\b(ERROR|WARNING)\[", line)]
    assert bad == []


def test_ami_and_sip_listen_on_loopback_only(lab: AsteriskLab) -> None:
    assert "127.0.0.1:5038" in lab.cli("manager show settings")
    assert re.search(r"transport-udp\s+udp.*127\.0\.0\.1:5060", lab.cli("pjsip show transports"))
    # TCP: AMI, and the HTTP server (http.conf) only for browser softphones' SIP over WebSocket:
    # 8089 with TLS, 8088 plain (never to be opened to a network)
    assert sorted(_asterisk_sockets(lab, "t")) == [
        ("127.0.0.1", AMI_PORT),
        ("127.0.0.1", 8088),
        ("127.0.0.1", WSS_PORT),
    ]
    status = lab.cli("http show status")
    assert "HTTPS Server Enabled and Bound to 127.0.0.1:8089" in status and "/ws =>" in status
    assert re.search(r"transport-wss\s+wss", lab.cli("pjsip show transports"))
    udp = _asterisk_sockets(lab, "u")
    assert ("127.0.0.1", SIP_PORT) in udp
    # Besides SIP (and RTP of calls in progress, 127.0.0.1:10000-20000) only PJSIP's DNS client
    # sockets may exist: one IPv4, one IPv6, unbound address, kernel-chosen ephemeral port. They only
    # send queries to the resolv.conf nameserver and take its answers; nothing is served on them.
    low, _high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert all(port == SIP_PORT or 10000 <= port <= 20000 for addr, port in udp if addr == "127.0.0.1"), udp
    elsewhere = [(addr, port) for addr, port in udp if addr != "127.0.0.1"]
    assert len(elsewhere) <= 2 and all(a in ("0.0.0.0", "*", "::") and p >= low for a, p in elsewhere), udp


def test_generated_secret_files_are_private_and_product_files_hold_no_secret(lab: AsteriskLab) -> None:
    for name in ("manager_users.conf", "pjsip_agents_auth.conf", "keys/asterisk.key"):
        mode = stat.S_IMODE((lab.etc_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    assert f"secret = {lab.ami_secret}" in (lab.etc_dir / "manager_users.conf").read_text()
    assert stat.S_IMODE(lab.state_dir.stat().st_mode) == 0o700
    for conf in Path(lab.config_dir).glob("*.conf"):
        for line in conf.read_text().splitlines():
            assert not re.match(r"\s*(secret|password)\s*=\s*\S", line), f"{conf.name}: {line}"


def test_sounds_dir_is_inside_the_root_and_has_the_core_prompts(lab: AsteriskLab) -> None:
    sounds = lab.sounds_dir
    assert sounds.is_relative_to(lab.root)
    assert (sounds / "beep.wav").exists() and (sounds / "beep.gsm").exists()


def test_a_lab_call_is_answered_with_rtp_on_loopback(lab: AsteriskLab, tmp_path: Path) -> None:
    call = _sipp(lab, tmp_path, "hold", from_user="lab", pause_ms=1500, background=True)
    try:
        deadline = time.monotonic() + 5
        rtp: list[tuple[str, int]] = []
        while time.monotonic() < deadline and not rtp:
            rtp = [s for s in _asterisk_sockets(lab, "u") if 10000 <= s[1] <= 20000]
            time.sleep(0.1)
        assert rtp and all(addr == "127.0.0.1" for addr, _ in rtp), rtp
    finally:
        call.wait(timeout=30)
    assert call.returncode == 0, _errors(tmp_path, "lab", "hold")


def test_bench_dialplan_route_answers_plays_and_hangs_up(lab: AsteriskLab, tmp_path: Path) -> None:
    started = time.monotonic()
    _sipp(lab, tmp_path, "bench-dialplan", from_user="lab", pause_ms=8000)
    # Asterisk answers, plays the beep and hangs up itself, long before SIPp's 8 s pause ends: the
    # stock scenario reports that BYE as unexpected (exit 1), which is the proof the route ran.
    assert time.monotonic() - started < 6
    assert "Aborting call on an unexpected BYE" in _errors(tmp_path, "lab", "bench-dialplan")


def test_trunk_call_without_controller_falls_back_to_the_main_queue(lab: AsteriskLab, tmp_path: Path) -> None:
    # This session holds the lab lock and every controller fixture stops its 'ivr serve': a
    # listener here is a stale controller, and the fallback path could not be proven.
    assert not _port_in_use(4573), "a stale FastAGI controller holds 4573: the fallback path cannot be forced"
    dnis = f"555{random.randrange(10**6):06d}"  # unique: the log may hold earlier calls
    queue_log = lab.host_path("/var/log/asterisk/queue_log")
    before = queue_log.stat().st_size if queue_log.exists() else 0
    call = _sipp(lab, tmp_path, dnis, pause_ms=1500)
    # The stock scenario (From user "sipp") is the trunk: answered, it waits in the fallback queue.
    assert call.returncode == 0, _errors(tmp_path, "sipp", dnis)
    log = lab.log_path.read_text()
    assert re.search(rf"IVR fallback: PJSIP/trunk-\S+ sipp -> {dnis}: reason=no-action agistatus=FAILURE", log)
    with queue_log.open() as handle:
        handle.seek(before)
        assert re.search(r"\|main\|NONE\|ENTERQUEUE\|", handle.read())


def test_agent_phone_is_not_taken_for_the_trunk_and_must_authenticate(lab: AsteriskLab, tmp_path: Path) -> None:
    call = _sipp(lab, tmp_path, "*43", from_user="agent1001")
    assert call.returncode != 0
    # Identified by From user (endpoint_identifier_order = username,ip), so challenged, not routed
    # as the trunk (which would answer with 200 and start the IVR).
    assert "received 'SIP/2.0 401 Unauthorized" in _errors(tmp_path, "agent1001", "*43")


def test_a_new_lab_object_stops_the_stale_asterisk_and_stop_is_idempotent(lab: AsteriskLab) -> None:
    """A later run's fresh lab object takes over a stale Asterisk of the root; stop is idempotent.

    Runs whether this module or an earlier one started the Asterisk (the session holds the lab
    lock, so it is ours either way) and leaves one running again for the rest of the session.
    """
    old_pid = lab.server_pid()
    assert old_pid is not None and lab.is_running()
    fresh = AsteriskLab(progress=lambda line: None)  # as a later test run would
    assert fresh.ami_secret == lab.ami_secret and fresh.agent_passwords == lab.agent_passwords
    try:
        started = time.monotonic()
        fresh.start()
        print(f"[lab] stale stop + start in {time.monotonic() - started:.1f}s")
        new_pid = fresh.server_pid()
        assert new_pid is not None and new_pid != old_pid
        assert not Path(f"/proc/{old_pid}").exists() or old_pid not in fresh._asterisk_pids()
        assert fresh.ami_login_succeeds()
        fresh.stop()
        assert not fresh.is_running() and not lab.is_running()
        fresh.stop()
        lab.stop()
        assert not (lab.root / "run/asterisk/asterisk.ctl").exists()
    finally:
        if not lab.is_running():
            lab.start()  # as found: later tests of the session call this Asterisk
    assert lab.ami_login_succeeds()
