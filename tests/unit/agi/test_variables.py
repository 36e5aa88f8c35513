"""The channel variable names of ivr.agi.variables are the ones the shipped dialplan uses, both ways."""

from __future__ import annotations

import re
from pathlib import Path

from ivr.agi import variables as var

REPO = Path(__file__).resolve().parents[3]
#: Asterisk's own variables the dialplan reads (set by Asterisk, not by the controller or the dialplan).
ASTERISK_OWN = {"AGISTATUS", "ARG1", "CHANNEL", "DIALSTATUS", "EXTEN", "QUEUESTATUS"}
NAME = r"[A-Z][A-Z0-9_]*"


def dialplan_names(text: str) -> set[str]:
    """Every variable the dialplan reads (``${NAME}``), sets (``Set(NAME=``/``Set(__NAME=``) or
    defines in ``[globals]``; comments are ignored, functions (``${CALLERID(num)}``) are not variables."""
    names: set[str] = set()
    section = ""
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if header := re.fullmatch(r"\[([^\]]+)\].*", line):
            section = header.group(1)
            continue
        names.update(re.findall(r"\$\{(" + NAME + r")\}", line))
        names.update(re.findall(r"Set\(_{0,2}(" + NAME + r")=", line))
        if section == "globals" and (glob := re.fullmatch(r"(" + NAME + r")\s*=.*", line)):
            names.add(glob.group(1))
    return names - ASTERISK_OWN


def test_the_parser_sees_reads_sets_and_globals_but_not_functions_or_comments() -> None:
    text = (
        "[globals]\nA_B = 1\n[ctx]\n; ${COMMENTED}\nexten => s,1,Set(__C=${D})\n same => n,NoOp(${CALLERID(num)} ${E})"
    )
    assert dialplan_names(text) == {"A_B", "C", "D", "E"}


def test_every_name_the_shipped_dialplan_uses_is_defined_once_in_the_module_and_vice_versa() -> None:
    used = dialplan_names((REPO / "asterisk-config" / "extensions.conf").read_text())
    assert used - var.DIALPLAN == set(), "extensions.conf uses names ivr.agi.variables does not define"
    assert var.DIALPLAN - used == set(), "ivr.agi.variables defines dialplan names extensions.conf never uses"


def test_the_ami_channelvars_are_journey_variables_the_module_defines() -> None:
    conf = (REPO / "asterisk-config" / "manager.conf").read_text()
    (line,) = [ln for ln in conf.splitlines() if ln.startswith("channelvars")]
    named = {n.strip() for n in line.split("=", 1)[1].split(";", 1)[0].split(",")}
    defined = {v for k, v in vars(var).items() if k.isupper() and isinstance(v, str)}
    assert named and named <= defined


def test_inherited_and_slot_names() -> None:
    assert var.inherited(var.CALLBACK_ID) == "__IVR_CALLBACK_ID"
    assert var.slot("account_number") == "IVR_SLOT_ACCOUNT_NUMBER"
