"""Flows the lab's calls use beside the shipped ones (``dialplans/``): each isolates one thing the
tests and the demo show, on its own number, so the shipped flows stay as admins would write them.

* ``history`` (``HISTORY_NUMBER``): the bill option is NOT first in the file and
  ``min_contacts: 3`` keeps the first three calls on the file's order, so a caller who hears the
  bill option first on key 1 can only have been personalized by their own history.
* ``desk`` (``DESK_NUMBER``): a spoken menu, a keyed account number, the billing skill queue: the
  shortest way to an agent's screen pop with an intent, a transcript and a slot on it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIALPLANS = REPO / "dialplans"

HISTORY_NUMBER = "5550199"
HISTORY_MENU = "How can we help you today?"
HISTORY_GOODBYE = "Thank you for calling Example Power. Goodbye."
HISTORY_FLOW = f"""\
# Lab line: the bill option is NOT first in the file.
flow: history
numbers: ["{HISTORY_NUMBER}"]
start: main_menu
steps:
  main_menu:
    menu:
      prompt: {HISTORY_MENU}
      personalize: {{min_contacts: 3}}
      tries: 2
      timeout: 4
      options:
        outage:   {{dtmf: "1", say: "reporting an outage", intents: [outage], next: outage_info}}
        pay_bill: {{dtmf: "2", say: "paying your bill", intents: [billing], next: account}}
        agent:    {{dtmf: "0", say: "talking to an agent", intents: [agent], next: goodbye, pin: last}}
      on_failure: goodbye
  account:
    ask:
      prompt: Please enter your eight digit account number, then press pound.
      slot: account_number
      digits: 8
      timeout: 6
      tries: 2
      prefill: true
      reuse_for: 1d
      on_failure: goodbye
    next: goodbye
  outage_info:
    say: We are aware of outages in some areas and crews are working on them.
    next: goodbye
  goodbye:
    hangup: {HISTORY_GOODBYE}
"""

DESK_NUMBER = "5550188"
DESK_MENU = "How can we help you today?"
DESK_FLOW = f"""\
# Lab line: a spoken menu, a keyed account number, the billing skill queue.
flow: desk
numbers: ["{DESK_NUMBER}"]
start: main_menu
steps:
  main_menu:
    menu:
      prompt: {DESK_MENU}
      personalize: true
      tries: 2
      timeout: 5
      options:
        pay_bill: {{dtmf: "1", say: "paying your bill", intents: [billing, pay], next: account}}
        outage:   {{dtmf: "2", say: "reporting an outage", intents: [outage], next: to_main}}
        agent:    {{dtmf: "0", say: "talking to an agent", intents: [agent, operator], next: to_main}}
      on_failure: to_main
  account:
    ask:
      prompt: Please enter your eight digit account number, then press pound.
      slot: account_number
      digits: 8
      tries: 3
      timeout: 6
    next: to_billing
  to_billing:
    queue: {{name: billing, skill: billing, priority: 5, carry: [account_number]}}
  to_main:
    queue: {{name: main}}
"""

LAB_FLOWS = {"history.yaml": HISTORY_FLOW, "desk.yaml": DESK_FLOW}


def write_flows(target: Path, *, shipped: bool = True, only: tuple[str, ...] = ()) -> Path:
    """A flows folder at ``target``: the shipped ``dialplans/`` (unless ``shipped=False``) plus the
    lab flows (all, or the file names in ``only``). Returns ``target``."""
    if shipped:
        shutil.copytree(DIALPLANS, target, dirs_exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
    for name, text in LAB_FLOWS.items():
        if not only or name in only:
            (target / name).write_text(text)
    return target
