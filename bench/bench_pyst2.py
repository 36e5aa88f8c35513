#!/usr/bin/env python3
"""Classic process-per-call AGI baseline (pyst2): the same AGI commands as the controller's flows.

Asterisk forks and execs this script for every call (AGI(/path/to/bench_pyst2.py)), which is how
most Python IVRs were written before FastAGI. Without an argument it does what the ``bench`` flow
does (one short file, IVR_ACTION for the dialplan); with ``menu`` what the ``bench_menu`` flow
does (greeting, the menu as one Read() of its fragments, the key, the reply for it). The file names are the
controller's rendered prompts; tests/unit/lab/test_bench_routes.py keeps them in step with the flow.
"""

import sys

from asterisk.agi import AGI

GREETING = "ivr/thank-you-for-calling-ce598488"
MENU = [
    "ivr/please-choose-from-the-following-14e28566",
    "ivr/for-f7880600",
    "ivr/billing-acd14c7a",
    "ivr/press-cd09e18a",
    "digits/1",
    "ivr/for-f7880600",
    "ivr/outages-ef2db6fb",
    "ivr/press-cd09e18a",
    "digits/2",
]
REPLIES = {"1": "ivr/billing-is-closed-today-c0879f71", "2": "ivr/we-are-working-on-it-80f19c19"}

agi = AGI()
if sys.argv[1:] == ["menu"]:
    agi.stream_file(GREETING)
    agi.appexec("Read", "IVR_MENU_KEY,{},1,,1,3".format("&".join(MENU)))
    key = agi.get_variable("IVR_MENU_KEY")
    if key in REPLIES:
        agi.stream_file(REPLIES[key])
else:
    agi.stream_file("beep")
agi.set_variable("IVR_ACTION", "hangup")
