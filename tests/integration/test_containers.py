"""The container stack (docker/) end to end with podman: images built, stack up, calls through it.

SIPp calls the containerised Asterisk, whose dialplan hands them over FastAGI to the
containerised controller, which writes the journeys to the containerised PostgreSQL; the test
reads them there (psql inside the PostgreSQL container), not from any file of its own. The stack
runs with both optional profiles: ``sms`` (Kannel) and ``nodes`` (a second controller, the
dialplan's standby address, started once the first is healthy: ``docker/compose.py`` runs the
health checks podman cannot schedule).

The stack runs on free ports, never the lab's 5060/5038/4573, and its RTP range is above the
lab's, so a lab Asterisk of this session may be running meanwhile. The lab lock is held all the
same: while the container's Asterisk runs, another session's lab start would see a foreign
Asterisk and refuse (lab.asterisk). Images are built by ``docker/run build``, which skips an
image whose inputs are unchanged (their sha256 is its tag): a rerun costs seconds.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.kannel import KannelLab
from lab.prompts import prompt_lengths
from lab.prompts import prompt_ms as ms
from lab.sipp import CallerScript, Dtmf, run_caller

pytestmark = pytest.mark.requires("podman", "sipp")

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "docker" / "run"
GREETING = "Welcome to Example Power."
OUTAGE = "We are aware of outages in some areas and crews are working on them."
# Above the lab's 10000-20000 and below the kernel's ephemeral range, where SIPp's ports are.
RTP_START, RTP_END = 21000, 21999


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    sip_port: int
    web_port: int
    postgres_port: int

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(RUN), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def logs(self, service: str) -> str:
        out = subprocess.run(
            ["podman", "logs", "--tail", "40", self.container(service)], capture_output=True, text=True
        )
        return out.stdout + out.stderr

    def readyz(self, web_port: int | None = None) -> tuple[int, dict[str, Any]]:
        try:
            url = f"http://127.0.0.1:{web_port or self.web_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def sql(self, query: str) -> list[str]:
        """Rows of ``query`` run by psql inside the PostgreSQL container (one line per row)."""
        result = subprocess.run(
            [
                *("podman", "exec", "-u", "postgres", self.container("postgres")),
                *("psql", "-p", str(self.postgres_port), "-d", "ivr", "-At", "-c", query),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return [line for line in result.stdout.splitlines() if line]

    def journey(self, caller: str, timeout: float = 30, **expect: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.sql(f"SELECT data FROM journeys WHERE caller = '{caller}' ORDER BY started_at")
            seen = [json.loads(row) for row in rows]
            for journey in seen:
                if all(journey.get(k) == v for k, v in expect.items()):
                    return journey
            time.sleep(0.3)
        raise AssertionError(f"no journey of {caller} with {expect} in the container's PostgreSQL: {seen}")


def _run(*args: str, env: dict[str, str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(RUN), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"docker/run {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def images() -> None:
    """Every image of the stack, built unless its inputs are unchanged (time printed)."""
    started = time.monotonic()
    result = _run("build", env=dict(os.environ))
    print(f"\ndocker/run build: {time.monotonic() - started:.1f} s\n{result.stderr}")


@pytest.fixture(scope="module")
def stack(images: None, lab_lock: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = f"ivrtest{os.getpid()}"
    names = ("AMI", "AGI", "WEB", "SPEECH", "POSTGRES", "REDIS", "AGI_2", "WEB_2", "SPEECH_2")
    ports = {name: _free_port() for name in (*names, "SMSC", "KANNEL_ADMIN", "KANNEL_SENDSMS", "KANNEL_SMSBOX")}
    sip_port = _free_port(socket.SOCK_DGRAM)
    smsc = tmp_path_factory.mktemp("kannel") / "smsc.conf"  # the fake SMSC on a free port (not 10000: RTP)
    smsc.write_text(
        f"group = smsc\nsmsc = fake\nsmsc-id = fake\nport = {ports['SMSC']}\nconnect-allow-ip = 127.0.0.1\n"
    )
    env = dict(os.environ)
    env.update(
        IVR_COMPOSE_PROJECT=project,
        IVR_SECRETS_DIR=str(tmp_path_factory.mktemp("secrets")),
        IVR_SIP_BIND=f"127.0.0.1:{sip_port}",
        IVR_AMI_PORT=str(ports["AMI"]),
        IVR_AGI_PORT=str(ports["AGI"]),
        IVR_AGI_URL=f"agi://127.0.0.1:{ports['AGI']}",
        IVR_WEB_PORT=str(ports["WEB"]),
        IVR_SPEECH_PORT=str(ports["SPEECH"]),
        IVR_POSTGRES_PORT=str(ports["POSTGRES"]),
        IVR_REDIS_PORT=str(ports["REDIS"]),
        IVR_RTP_START=str(RTP_START),
        IVR_RTP_END=str(RTP_END),
        IVR_SPEECH_ENGINE="off",  # keys only: the calls below test the path, not the recognizer
        IVR_AGI_PORT_2=str(ports["AGI_2"]),
        IVR_WEB_PORT_2=str(ports["WEB_2"]),
        IVR_SPEECH_PORT_2=str(ports["SPEECH_2"]),
        IVR_AGI_STANDBY_URL=f"agi://127.0.0.1:{ports['AGI_2']}",
        IVR_SMS_PROVIDER="kannel",
        IVR_KANNEL_SMSC=str(smsc),
        IVR_KANNEL_ADMIN_PORT=str(ports["KANNEL_ADMIN"]),
        IVR_KANNEL_SENDSMS_PORT=str(ports["KANNEL_SENDSMS"]),
        IVR_KANNEL_SMSBOX_PORT=str(ports["KANNEL_SMSBOX"]),
    )
    stack = Stack(
        project=project,
        env=env,
        sip_port=sip_port,
        web_port=ports["WEB"],
        postgres_port=ports["POSTGRES"],
    )
    _run("secrets", env=env)
    # ``latest`` again to this checkout's images (a build skips what exists): another checkout's
    # test may have tagged its own as ``latest`` while this one waited for the lab lock
    _run("build", "asterisk", "controller", "postgres", "redis", "kannel", env=dict(os.environ))
    try:
        started = time.monotonic()
        _run("up", "--profile", "sms", "--profile", "nodes", env=env, timeout=300)
        deadline = started + 240
        status: int = 0
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                status, body = stack.readyz()
            except OSError:  # not listening yet
                status, body = 0, {}
            if status == 200 and body.get("checks", {}).get("ami") == "ok":
                break
            time.sleep(1)
        else:
            raise AssertionError(
                f"the controller was not ready in 240 s: {status} {body}\n"
                + "\n".join(f"--- {s}\n{stack.logs(s)}" for s in ("controller", "asterisk", "postgres"))
            )
        print(f"stack ready in {time.monotonic() - started:.1f} s: {body}")
        yield stack
    finally:
        down = stack.compose("down", "-v")
        if down.returncode != 0:
            print(f"docker/run down -v failed:\n{down.stdout}\n{down.stderr}")


def test_calls_through_the_containers_are_journeys_in_their_postgresql(stack: Stack) -> None:
    status, body = stack.readyz()
    assert (status, body["checks"], body["role"]) == (200, {"agi": "ok", "database": "ok", "ami": "ok"}, "leader")
    mounted = subprocess.run(
        ["podman", "volume", "inspect", "--format", "{{.Mountpoint}}", f"{stack.project}_prompts"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lengths = prompt_lengths(Path(mounted))  # rendered by the controller container, played by Asterisk's
    first = ms(lengths, GREETING) + 800  # during the menu prompt: barge-in
    second = first + ms(lengths, OUTAGE) + 1200  # during the "anything else?" menu
    result = run_caller(
        CallerScript(caller_id="+15551239001", dtmf=(Dtmf("2", first), Dtmf("2", second)), max_call_ms=40000),
        target=f"127.0.0.1:{stack.sip_port}",
    )
    result.raise_for_failure()
    assert result.who_hung_up == "ivr"
    journey = stack.journey("+15551239001", status="completed")
    assert journey["path"] == ["greeting", "check_hours", "main_menu", "outage_info", "outage_menu", "goodbye"]
    kinds = stack.sql(f"SELECT kind FROM interactions WHERE journey_id = '{journey['id']}' ORDER BY id")
    assert kinds.count("option_chosen") == 2 and kinds[-1] == "journey_completed"


def test_a_caller_who_hangs_up_is_saved_where_they_were(stack: Stack) -> None:
    result = run_caller(
        CallerScript(caller_id="+15551239002", hangup_after_ms=3000, max_call_ms=10000),
        target=f"127.0.0.1:{stack.sip_port}",
    )
    result.raise_for_failure()
    journey = stack.journey("+15551239002", status="abandoned")
    assert journey["path"][0] == "greeting"


def test_the_containerised_kannel_becomes_healthy_with_its_smsbox_on_line_and_stops_on_sigterm(stack: Stack) -> None:
    """Its health check passes (run here: nothing else runs it without systemd) and bearerbox
    reports smsbox on line. An SMS end to end through it is not tested here: the host's fakesmsc
    crashes (double free) after its first message to the container's bearerbox. Then it stops on
    SIGTERM at once (its entrypoint, PID 1, passes the signal on), not by SIGKILL after the engine's
    10 s (nothing after this test uses Kannel)."""
    deadline = time.monotonic() + 60  # nothing depends on Kannel, so nothing waited for it: wait here
    while subprocess.run(["podman", "healthcheck", "run", stack.container("kannel")], capture_output=True).returncode:
        assert time.monotonic() < deadline, stack.logs("kannel")
        time.sleep(1.0)
    password = (Path(stack.env["IVR_SECRETS_DIR"]) / "kannel_password").read_text().strip()
    admin = KannelLab(admin_port=int(stack.env["IVR_KANNEL_ADMIN_PORT"]), admin_password=password)
    while not re.search(r"smsbox:.*\(on-line", admin.status()):
        assert time.monotonic() < deadline, admin.status()
        time.sleep(0.5)
    started = time.monotonic()
    subprocess.run(["podman", "stop", "-t", "10", stack.container("kannel")], check=True, capture_output=True)
    took = time.monotonic() - started
    code = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.ExitCode}}", stack.container("kannel")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert took < 5 and code == "0", f"Kannel stopped in {took:.1f} s with exit code {code} (137: SIGKILLed)"


def test_the_second_controller_answers_calls_when_the_first_is_stopped(stack: Stack) -> None:
    """Last in the module: it stops the first controller. The dialplan's standby address
    (IVR_AGI_STANDBY, set from compose's IVR_AGI_STANDBY_URL) is the second node's FastAGI."""
    web_2 = int(stack.env["IVR_WEB_PORT_2"])
    status, body = stack.readyz(web_2)
    assert status == 200 and body["role"] == "follower", body  # started after the first, which leads
    ps = stack.compose("ps")
    assert ps.returncode == 0 and "(healthy)" in ps.stdout, ps.stdout + ps.stderr  # health checks were run
    subprocess.run(["podman", "stop", "-t", "5", stack.container("controller")], check=True, capture_output=True)
    result = run_caller(
        CallerScript(caller_id="+15551239003", hangup_after_ms=3000, max_call_ms=10000),
        target=f"127.0.0.1:{stack.sip_port}",
    )
    result.raise_for_failure()
    journey = stack.journey("+15551239003")
    assert journey["path"][0] == "greeting"  # the flow ran: node 2 served it, not the fallback queue
    deadline = time.monotonic() + 15  # and node 2 took the ACD lease over
    while stack.readyz(web_2)[1].get("role") != "leader":
        assert time.monotonic() < deadline, stack.logs("controller-2")
        time.sleep(0.5)


@pytest.mark.parametrize("image", ["controller", "asterisk", "postgres"])
def test_an_image_refuses_to_start_without_its_secrets(images: None, image: str, tmp_path: Path) -> None:
    """No default secrets: an empty secrets directory stops each service at once, naming the file."""
    result = subprocess.run(
        ["podman", "run", "--rm", "--network", "host", "-v", f"{tmp_path}:/run/secrets:ro", f"localhost/ivr-{image}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 64, result.stdout + result.stderr
    wanted = "postgres_password" if image == "postgres" else "ami_secret"
    assert "refusing to start" in result.stderr and wanted in result.stderr
