"""What the demo says at the end: one line per scene, and the exit code a script can trust.

Pure, so the rules (a scene that failed, or any SIP call that failed inside a scene that otherwise
looked fine, makes the demo fail) are tested with literal inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SceneResult:
    """How one scene went: ``ok`` is the scene's own checks; SIP failures are counted apart."""

    name: str
    expected: str
    happened: str
    ok: bool
    sip_calls: int = 0
    sip_failures: int = 0

    @property
    def passed(self) -> bool:
        """A scene passes only if its checks held AND every SIP call it placed succeeded."""
        return self.ok and self.sip_failures == 0


def exit_code(results: Sequence[SceneResult]) -> int:
    """0 when every scene passed; 1 otherwise, and 1 when nothing ran (a demo that showed nothing)."""
    if not results:
        return 1
    return 0 if all(r.passed for r in results) else 1


def _cell(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_table(results: Sequence[SceneResult], width: int = 48) -> str:
    """A plain-text table: scene, expected, happened, SIP calls, ok/failed; then a total line."""
    name_w = max([len("scene"), *(len(r.name) for r in results)])
    lines = [f"{'scene':<{name_w}}  {'expected':<{width}}  {'happened':<{width}}  {'SIP':>7}  result"]
    lines.append("-" * len(lines[0]))
    for r in results:
        sip = f"{r.sip_calls - r.sip_failures}/{r.sip_calls}"
        verdict = "ok" if r.passed else "FAILED"
        if r.ok and not r.passed:
            verdict = "FAILED (SIP)"
        lines.append(
            f"{r.name:<{name_w}}  {_cell(r.expected, width):<{width}}  {_cell(r.happened, width):<{width}}  "
            f"{sip:>7}  {verdict}"
        )
    failed = [r.name for r in results if not r.passed]
    total = f"{len(results) - len(failed)} of {len(results)} scenes ok"
    lines.append(total + (f"; failed: {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)
