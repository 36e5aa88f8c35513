"""Pure arithmetic of the per-customer aggregates, shared by the writer, the SQL and the tests.

An option's ``score`` is an exponentially decayed count: each choice adds 1 and the total halves
every ``half_life`` seconds. It is stored *as of* ``last_at`` (the latest choice), so updating it
needs only the stored row and the new choice, never the history:

    score_new = score_old * 2 ** (-(t - last_at) / half_life) + 1

Merging two partial aggregates of one option (what the writer's upsert does with a batch's
choices and the stored row) decays both to the later ``last_at`` and adds them; the result does not
depend on the order in which choices arrive.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DAY = 86_400.0


def decay(score: float, since: float, now: float, half_life: float) -> float:
    """``score`` as of ``since``, decayed to ``now`` (never grows: a clock step back decays by 0)."""
    return float(score * 2.0 ** (-max(0.0, now - since) / half_life))


@dataclass(frozen=True)
class OptionTally:
    count: int
    score: float  # as of last_at
    last_at: float

    def merge(self, other: OptionTally, half_life: float) -> OptionTally:
        later = max(self.last_at, other.last_at)
        return OptionTally(
            self.count + other.count,
            decay(self.score, self.last_at, later, half_life) + decay(other.score, other.last_at, later, half_life),
            later,
        )

    def chosen(self, at: float, half_life: float) -> OptionTally:
        return self.merge(OptionTally(1, 1.0, at), half_life)


def tally(times: Iterable[float], half_life: float) -> OptionTally | None:
    """The aggregate of choices made at ``times`` (any order); None for no choice."""
    result: OptionTally | None = None
    for at in sorted(times):
        result = OptionTally(1, 1.0, at) if result is None else result.chosen(at, half_life)
    return result
