"""An agent's softphone for the lab: SIPp REGISTERs as a PJSIP agent endpoint, then answers calls.

Why two SIPp runs on one port: a SIPp scenario is either a client (it sends first) or a server (it
receives first), and a phone must do both: send REGISTER, then receive INVITEs. The agent
endpoints have ``rewrite_contact = yes``, so Asterisk rings the address the REGISTER came *from*.
So a one-shot client scenario registers from port P (digest auth with SIPp's ``[authentication]``)
and exits; then a server scenario listens on the same port P and answers every INVITE after
``ring_ms`` of ringing (the window in which the agent's screen pop must already be painted).

``calls()`` reads SIPp's message trace to say how many INVITEs arrived and were answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from lab.errors import LabError
from lab.sipp import find_sipp

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def register_scenario(endpoint: str, password: str, expires: int = 3600) -> str:
    """SIPp client scenario: REGISTER, answer the 401 digest challenge, expect 200. Pure."""
    if not _NAME.match(endpoint):
        raise ValueError(f"bad endpoint name {endpoint!r}")
    if any(c in password for c in " \t\r\n[]\\"):
        raise ValueError("password has characters SIPp cannot carry")

    def register(cseq: int, auth: str) -> str:
        lines = [
            "REGISTER sip:[remote_ip]:[remote_port] SIP/2.0",
            "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
            f"From: <sip:{endpoint}@[remote_ip]>;tag=[pid]reg[call_number]",
            f"To: <sip:{endpoint}@[remote_ip]>",
            "Call-ID: [call_id]",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{endpoint}@[local_ip]:[local_port]>",
            f"Expires: {expires}",
            "Max-Forwards: 70",
            "User-Agent: ivr-lab-softphone",
        ]
        if auth:
            lines.append(auth)
        lines.append("Content-Length: 0")
        return "<![CDATA[\n" + "\n".join(lines) + "\n\n]]>"

    auth = f"[authentication username={endpoint} password={password}]"
    return "\n".join(
        [
            '<?xml version="1.0" encoding="ISO-8859-1" ?>',
            '<scenario name="ivr-lab softphone register">',
            f'<send retrans="500">{register(1, "")}</send>',
            '<recv response="401" auth="true"/>',
            f'<send retrans="500">{register(2, auth)}</send>',
            '<recv response="200"/>',
            "</scenario>",
            "",
        ]
    )


def answer_scenario(endpoint: str, ring_ms: int) -> str:
    """SIPp server scenario: INVITE -> 180, ``ring_ms`` later 200 with SDP; then BYE -> 200. Pure."""
    if not _NAME.match(endpoint):
        raise ValueError(f"bad endpoint name {endpoint!r}")
    contact = f"Contact: <sip:{endpoint}@[local_ip]:[local_port];transport=[transport]>"
    head = "[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]agent[call_number]\n[last_Call-ID:]\n[last_CSeq:]"
    ringing = f"SIP/2.0 180 Ringing\n{head}\n{contact}\nContent-Length: 0\n"
    ok = (
        f"SIP/2.0 200 OK\n{head}\n{contact}\nContent-Type: application/sdp\nContent-Length: [len]\n\n"
        "v=0\no=agent 1 1 IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\n"
        "m=audio [media_port] RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=sendrecv\n"
    )
    bye_ok = "SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0\n"
    return "\n".join(
        [
            '<?xml version="1.0" encoding="ISO-8859-1" ?>',
            '<scenario name="ivr-lab softphone answer">',
            '<recv request="INVITE" crlf="true"/>',
            f"<send><![CDATA[\n{ringing}\n]]></send>",
            f'<pause milliseconds="{ring_ms}"/>',
            f'<send retrans="500"><![CDATA[\n{ok}\n]]></send>',
            '<recv request="ACK" crlf="true"/>',
            '<recv request="BYE"/>',
            f"<send><![CDATA[\n{bye_ok}\n]]></send>",
            "</scenario>",
            "",
        ]
    )


class Softphone:
    """``async with Softphone("agent1001", password) as phone:`` registered and answering."""

    def __init__(
        self,
        endpoint: str,
        password: str = "",
        *,
        ring_ms: int = 3000,
        target: str = "127.0.0.1:5060",
        register: bool = True,
    ) -> None:
        """``register=False``: only answer (a customer's phone that a callback dials at ``uri``)."""
        self.endpoint = endpoint
        self.password = password
        self.ring_ms = ring_ms
        self.target = target
        self.registers = register
        self.port = _free_udp_port()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"ivr-softphone-{endpoint}-"))
        self._uas: asyncio.subprocess.Process | None = None

    async def register(self, timeout: float = 10) -> None:
        """REGISTER from our port (the answering SIPp must not be running: same port)."""
        scenario = self.workdir / "register.xml"
        scenario.write_text(register_scenario(self.endpoint, self.password))
        argv = [
            find_sipp(),
            self.target,
            "-sf",
            str(scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            "1",
            "-nostdin",
            "-ci",
            "127.0.0.1",
            "-trace_err",
            "-error_file",
            str(self.workdir / "register-errors.log"),
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise LabError(f"{self.endpoint}: REGISTER got no final answer in {timeout}s") from None
        if proc.returncode != 0:
            errors = (self.workdir / "register-errors.log").read_text(errors="replace")[-2000:]
            raise LabError(f"{self.endpoint}: REGISTER failed (sipp {proc.returncode}): {err.decode()[-500:]}{errors}")

    @property
    def uri(self) -> str:
        return f"sip:{self.endpoint}@127.0.0.1:{self.port}"

    async def start(self) -> None:
        if self.registers:
            await self.register()
        scenario = self.workdir / "answer.xml"
        scenario.write_text(answer_scenario(self.endpoint, self.ring_ms))
        media = _free_udp_port()
        argv = [
            find_sipp(),
            "-sf",
            str(scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(media),
            "-nostdin",
            "-ci",
            "127.0.0.1",
            "-trace_msg",
            "-message_file",
            str(self.workdir / "messages.log"),
            "-trace_err",
            "-error_file",
            str(self.workdir / "errors.log"),
        ]
        self._uas = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "stderr.log").open("wb"),
        )
        await asyncio.sleep(0.3)
        if self._uas.returncode is not None:
            raise LabError(f"{self.endpoint}: answering sipp exited: {(self.workdir / 'stderr.log').read_text()}")

    async def stop(self) -> None:
        if self._uas is not None and self._uas.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._uas.terminate()
            try:
                await asyncio.wait_for(self._uas.wait(), 5)
            except TimeoutError:
                self._uas.kill()
                await self._uas.wait()
        self._uas = None

    async def restart(self) -> None:
        """After Asterisk restarted: register again and answer again (same port)."""
        await self.stop()
        await self.start()

    def invites(self) -> int:
        """INVITEs received so far (from SIPp's message trace)."""
        path = self.workdir / "messages.log"
        if not path.exists():
            return 0
        return len(re.findall(r"^INVITE sip:", path.read_text(errors="replace"), re.MULTILINE))

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    async def __aenter__(self) -> Softphone:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
        if exc is None:
            self.close()
