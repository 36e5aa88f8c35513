#!/usr/bin/env python3
"""Classic process-per-call AGI baseline (pyst2): the same AGI commands as the `bench` flow.

Asterisk forks and execs this script for every call (AGI(/path/to/bench_pyst2.py)), which is how
most Python IVRs were written before FastAGI. It plays the same short file and leaves the same
IVR_ACTION for the dialplan as our controller's bench flow does.
"""

from asterisk.agi import AGI

agi = AGI()
agi.stream_file("beep")
agi.set_variable("IVR_ACTION", "hangup")
