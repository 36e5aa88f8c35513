"""The widening rule: who may take a waiting caller, as the wait grows. Pure mirror of queuerules.conf.

Agents are members of every queue they have a skill for, with a **penalty** per skill: 0 for a
primary skill, 1 for a secondary one, 2 for "can help if nobody else can"; every agent is also a
member of the catch-all queue ``main`` with penalty 0. A caller first waits for penalty-0 agents
only; app_queue then raises the allowed penalty (``QUEUE_MAX_PENALTY``) on a schedule given by the
``[widen]`` rule in ``asterisk-config/queuerules.conf``, which every skill queue uses
(``defaultrule = widen`` in queues.conf)::

    waited  0 s   -> penalty 0 only (specialists)
    waited 30 s   -> penalty <= 1   (secondary skill)
    waited 60 s   -> penalty <= 2   (anyone with the skill at all)

``WIDEN_STEPS`` must equal that file (a unit test compares them); :func:`max_penalty` lets the ACD
estimate waits and tell the desktop why an agent outside the specialists got a call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: (seconds waited, max penalty from then on): must match queuerules.conf [widen].
WIDEN_STEPS: tuple[tuple[int, int], ...] = ((0, 0), (30, 1), (60, 2))
PRIMARY, SECONDARY, BACKUP = 0, 1, 2


def max_penalty(waited_s: float, steps: Sequence[tuple[int, int]] = WIDEN_STEPS) -> int:
    """The highest member penalty app_queue may ring for a caller who has waited ``waited_s``."""
    allowed = 0
    for at, penalty in steps:
        if waited_s >= at:
            allowed = penalty
    return allowed


def eligible(penalty: int, waited_s: float, steps: Sequence[tuple[int, int]] = WIDEN_STEPS) -> bool:
    return penalty <= max_penalty(waited_s, steps)


def parse_rules(text: str, rule: str = "widen") -> tuple[tuple[int, int], ...]:
    """The ``penaltychange => seconds,max`` lines of one section of a queuerules.conf."""
    steps: list[tuple[int, int]] = []
    section = None
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        header = re.fullmatch(r"\[([^\]]+)\]", line)
        if header:
            section = header.group(1)
            continue
        if section != rule:
            continue
        match = re.fullmatch(r"penaltychange\s*=>\s*(\d+)\s*,\s*(\d+).*", line)
        if match:
            steps.append((int(match.group(1)), int(match.group(2))))
    return tuple(steps)
