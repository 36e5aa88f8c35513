"""The demo's running system, set up the way a user sets it up, and read the way a user reads it.

Asterisk 22 (the lab root, a fresh random AMI secret each run), Kannel with its fake SMSC, and
``ivr serve`` as a child process with every capability on (speech, AMI and the agent desktop,
SMS hand-off, the timeline API). Agents are made with ``ivr agents add``; journeys are read with
``ivr journeys`` and timelines through the HTTP API with the bearer token: nothing here opens the
database, so the demo shows only what a user could see.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.agents import add_agent
from lab.asterisk import WSS_PORT, AsteriskLab
from lab.controller import ControllerProcess
from lab.errors import LabError
from lab.flows import write_flows
from lab.kannel import KannelLab, free_port
from lab.prompts import build_flow_prompts, prompt_lengths, prompt_ms

REPO = Path(__file__).resolve().parents[2]
SMS_SENDER = "5550200"


@dataclass(frozen=True)
class JourneyRow:
    """One line of ``ivr journeys``."""

    id: str
    channel: str
    caller: str | None
    flow: str
    status: str
    path: list[str]


def parse_journey_list(text: str) -> list[JourneyRow]:
    """``ivr journeys`` output -> rows (newest first, as printed). Pure."""
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        path = parts[5].split(" > ") if len(parts) == 6 else []
        rows.append(JourneyRow(parts[0], parts[1], None if parts[2] == "-" else parts[2], parts[3], parts[4], path))
    return rows


def parse_journey_detail(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``ivr journeys ID`` output -> (the journey, its interaction log in order). Pure.

    The command prints the journey as indented JSON, then one line per interaction:
    kind, step (``-`` for none) and the entry's data as JSON.
    """
    journey, end = json.JSONDecoder().raw_decode(text.lstrip())
    rest = text.lstrip()[end:]
    log = []
    for line in rest.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        kind, step, data = parts
        log.append({"kind": kind, "step": None if step == "-" else step, "data": json.loads(data)})
    return dict(journey), log


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Secrets:
    """Made fresh for every run; printed only with ``--keep``."""

    ami: str
    api_token: str
    handoff: str
    sms_inbound: str
    agent_password: str

    @classmethod
    def generate(cls) -> Secrets:
        return cls(
            ami=secrets.token_urlsafe(24),
            api_token=secrets.token_urlsafe(24),
            handoff=secrets.token_urlsafe(24),
            sms_inbound=secrets.token_urlsafe(16),
            agent_password=secrets.token_urlsafe(12),
        )


AGENT = "ann"
AGENT_NAME = "Ann Agent"
AGENT_ENDPOINT = "agent1001"


class DemoStack:
    """Owns Asterisk, Kannel and the controller for one demo run; ``close()`` stops all three."""

    def __init__(self, say: Callable[[str], None], *, work_dir: Path, web_port: int | None = None) -> None:
        self.say = say
        self.work_dir = work_dir
        self.data_dir = work_dir / "ivr"
        self.flows_dir = work_dir / "flows"
        self.artifacts = work_dir / "artifacts"
        self.secrets = Secrets.generate()
        self.web_port = web_port if web_port is not None else free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.lab = AsteriskLab(ami_secret=self.secrets.ami, progress=lambda line: say(f"  {line}"))
        self.kannel: KannelLab | None = None
        self.controller: ControllerProcess | None = None
        #: a scene stopped the controller (``stop_controller``); ``restore_controller`` restarts it
        self.controller_stopped = False
        self.lengths: dict[str, int] = {}

    @staticmethod
    def preferred_web_port() -> int:
        """8080 (the product's default, so the README's URLs work) when free, else any free port."""
        return 8080 if _port_free(8080) else free_port()

    # ------------------------------------------------------------------ set-up

    def start(self) -> None:
        say = self.say
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.artifacts.mkdir(parents=True)
        say("== Provisioning Asterisk 22 (Debian sid root; cached after the first run)")
        self.lab.provision()
        self.lab.install_config()
        say("== Flows: the shipped dialplans/ plus the lab's 'history' and 'desk' lines")
        write_flows(self.flows_dir)
        say("== Rendering prompts with an offline TTS into Asterisk's sounds directory")
        report = build_flow_prompts(self.flows_dir, self.lab.sounds_dir)
        say(f"  {len(report.rendered)} rendered, {len(report.skipped)} up to date (engine {report.engine})")
        self.lengths = prompt_lengths(self.lab.sounds_dir)
        say("== Starting Asterisk")
        self.lab.start()
        say("== Starting Kannel (bearerbox, smsbox, fake SMSC)")
        get_url = f"{self.web}/sms/kannel/mo?key={self.secrets.sms_inbound}&from=%p&to=%P&text=%a"
        self.kannel = KannelLab(get_url=get_url)
        self.kannel.start()
        say(f"== Creating agent {AGENT!r} with `ivr agents add` (softphone {AGENT_ENDPOINT}, skill billing)")
        add_agent(self.data_dir, AGENT, AGENT_ENDPOINT, ["billing"], self.secrets.agent_password, name=AGENT_NAME)
        say("== Starting the controller: `ivr serve` (loading Whisper tiny.en and the sentence encoder)")
        self.controller = ControllerProcess(flows_dir=self.flows_dir, data_dir=self.data_dir, env=self._env())
        self._start_controller()
        say(f"  ivr serve is up: FastAGI 127.0.0.1:4573, speech 127.0.0.1:4574, web {self.web}/")

    def _start_controller(self) -> None:
        assert self.controller is not None
        self.controller.start(timeout=120)
        for line in ("AudioSocket server listening on", "HTTP API listening on", "AMI connected"):
            self.controller.wait_for_log(line, timeout=60)

    def stop_controller(self) -> None:
        """Stop the demo's ``ivr serve`` for a scene that runs controllers of its own on this
        Asterisk: they need its FastAGI port (the dialplan's node 1), and two ACDs on one AMI would
        both drive app_queue. ``restore_controller`` starts it again, before the next scene or
        ``--keep``, not at the scene's end: after the last scene no restart is paid for."""
        assert self.controller is not None
        self.controller.stop()
        self.controller_stopped = True

    def restore_controller(self) -> None:
        """Start the demo's controller again if a scene stopped it; otherwise nothing."""
        if not self.controller_stopped:
            return
        assert self.controller is not None
        self.say("== Starting the demo's controller again (a scene stopped it)")
        log = self.controller.log_path
        if log.exists():  # the restart is waited for by its own lines, not the first run's
            log.replace(log.with_name(log.name + ".1"))
        self._start_controller()
        self.controller_stopped = False

    def _env(self) -> dict[str, str]:
        assert self.kannel is not None
        return {
            "IVR_SPEECH_SOUNDS_DIR": str(self.lab.sounds_dir),
            "IVR_SPEECH_ENGINE": "whisper",
            "IVR_WEB_PORT": str(self.web_port),
            "IVR_API_TOKEN": self.secrets.api_token,
            "IVR_AMI_SECRET": self.secrets.ami,
            "IVR_HANDOFF_SECRET": self.secrets.handoff,
            "IVR_HANDOFF_TTL": "1800",
            "IVR_SMS_PROVIDER": "kannel",
            "IVR_SMS_KANNEL_URL": self.kannel.sendsms_url,
            "IVR_SMS_KANNEL_USERNAME": self.kannel.username,
            "IVR_SMS_KANNEL_PASSWORD": self.kannel.password,
            "IVR_SMS_INBOUND_TOKEN": self.secrets.sms_inbound,
            "IVR_SMS_SENDER": SMS_SENDER,
            # the desktop's browser softphone reaches the lab Asterisk's WSS (lab.asterisk's http.conf)
            "IVR_DESKTOP_SOFTPHONE_WSS_URL": f"wss://127.0.0.1:{WSS_PORT}/ws",
        }

    def close(self) -> None:
        """Stop the controller, Kannel and Asterisk, in that order (calls first lose their controller)."""
        if self.controller is not None:
            self.say("== Stopping the controller")
            self.controller.stop()
        if self.kannel is not None:
            self.say("== Stopping Kannel")
            self.kannel.cleanup()
        self.say("== Stopping Asterisk")
        self.lab.stop()

    # ------------------------------------------------------------------ what a user can read

    def ms(self, text: str) -> int:
        """How long the rendered prompt with this text plays."""
        return prompt_ms(self.lengths, text)

    async def ivr(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run ``ivr ARGS`` against the demo's data, as a user would; its stdout. ``env``: other
        settings (``IVR_DATABASE_URL``: a scene's own database)."""
        full = {**os.environ, "IVR_DATA_DIR": str(self.data_dir), "IVR_FLOWS_DIR": str(self.flows_dir), **(env or {})}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ivr.cli",
            *args,
            env=full,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise LabError(f"ivr {' '.join(args)} exited {proc.returncode}: {err.decode(errors='replace')[-500:]}")
        return out.decode()

    async def journeys(self) -> list[JourneyRow]:
        return parse_journey_list(await self.ivr("journeys", "--limit", "200"))

    async def journey(self, journey_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return parse_journey_detail(await self.ivr("journeys", journey_id))

    async def wait_journey(
        self, predicate: Callable[[JourneyRow], bool], *, seen: set[str] | None = None, timeout: float = 30
    ) -> JourneyRow:
        """The first journey (oldest first) matching ``predicate`` and not in ``seen``; adds it there."""
        seen = seen if seen is not None else set()
        deadline = time.monotonic() + timeout
        while True:
            for row in reversed(await self.journeys()):
                if row.id not in seen and predicate(row):
                    seen.add(row.id)
                    return row
            if time.monotonic() > deadline:
                raise LabError(f"no matching journey within {timeout}s")
            await asyncio.sleep(0.5)

    def timeline(self, phone: str, limit: int = 200, *, web: str | None = None) -> list[dict[str, Any]]:
        """The customer's timeline through the HTTP API, oldest first (``web``: another controller
        given the demo's API token, e.g. a scene's own node)."""
        request = urllib.request.Request(
            f"{web or self.web}/api/customers/by-phone/{phone}/timeline?limit={limit}",
            headers={"Authorization": f"Bearer {self.secrets.api_token}"},
        )
        with urllib.request.urlopen(request, timeout=5) as reply:
            return list(reversed(json.load(reply)["entries"]))
