"""AsteriskLab.hang_up_caller picks channels by the caller id column of ``core show channels
concise``: tests end their own caller's call with it while another caller's call goes on, so a
wrong column would hang up the wrong call or none."""

from __future__ import annotations

from pathlib import Path

from lab.asterisk import AsteriskLab
from lab.errors import LabError

# Asterisk 22's concise format: Channel!Context!Exten!Prio!State!App!Data!CallerID!Accountcode!
# PeerAccount!AMAFlags!Duration!BridgeID!Uniqueid: one caller holding, another at a menu who
# dialled a number that looks like a caller id
CONCISE = """\
PJSIP/trunk-00000001!ivr-queue!5550189!4!Up!Queue!billing!+15551239303!!!3!12!!1796.1
PJSIP/trunk-00000002!ivr!+15551239303!2!Up!AGI!agi://127.0.0.1:4573/inbound!+15551239304!!!3!3!!1796.2
"""


class ScriptedCli(AsteriskLab):
    """The lab with its CLI answered from a fixed listing; commands are recorded."""

    def __init__(self, tmp_path: Path, fail_hangups: bool = False) -> None:
        super().__init__(root=tmp_path)
        self.commands: list[str] = []
        self.fail_hangups = fail_hangups

    def cli(self, command: str, timeout: float = 30) -> str:
        self.commands.append(command)
        if command == "core show channels concise":
            return CONCISE
        if self.fail_hangups:
            raise LabError("asterisk -rx failed: no such channel")
        return ""


def test_only_the_callers_own_channel_is_hung_up(tmp_path: Path) -> None:
    lab = ScriptedCli(tmp_path)
    assert lab.hang_up_caller("+15551239304") == 1
    assert lab.commands[1:] == ["channel request hangup PJSIP/trunk-00000002"]


def test_a_number_only_dialled_is_not_the_caller(tmp_path: Path) -> None:
    lab = ScriptedCli(tmp_path)
    assert lab.hang_up_caller("+15551239303") == 1
    assert lab.commands[1:] == ["channel request hangup PJSIP/trunk-00000001"]


def test_no_such_caller_or_a_call_that_ended_meanwhile_is_no_error(tmp_path: Path) -> None:
    assert ScriptedCli(tmp_path).hang_up_caller("+15550000000") == 0
    assert ScriptedCli(tmp_path, fail_hangups=True).hang_up_caller("+15551239304") == 0
