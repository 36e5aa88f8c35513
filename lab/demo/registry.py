"""Scenes are small registered units: a later capability joins the demo by adding one module that
registers one scene, and ``--scene NAME`` can run it alone.

A scene gets the running stack (Asterisk, Kannel, ``ivr serve``, secrets) and a ``Tell`` to print
progress; it returns what happened in one line and raises ``SceneFailed`` when a check does not
hold. SIP results are recorded on the ``Tell`` so the summary can count them whatever the scene
decided.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.demo.stack import DemoStack
    from lab.sipp import SippResult


class SceneFailed(Exception):
    """A scene's check did not hold; the message says what was seen instead."""


@dataclass
class Tell:
    """A scene's voice: prints each step prefixed by the scene's name, and keeps its SIP results."""

    scene: str
    out: Callable[[str], None]
    sip: list[SippResult] = field(default_factory=list)

    def __call__(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.out(f"[{self.scene}] {line}")

    def call_result(self, result: SippResult, who: str) -> SippResult:
        """Record one SIP call and print its verdict."""
        self.sip.append(result)
        self(f"  {who}: SIP {'ok' if result.ok else 'FAILED: ' + result.summary()}")
        return result


def check(condition: bool, message: str) -> None:
    """A scene's assertion that survives ``python -O`` and reads as a failed expectation."""
    if not condition:
        raise SceneFailed(message)


SceneRun = Callable[["DemoStack", Tell], Awaitable[str]]


@dataclass(frozen=True)
class Scene:
    name: str
    title: str
    expected: str
    run: SceneRun
    order: int


SCENES: dict[str, Scene] = {}


def scene(name: str, title: str, expected: str, *, order: int) -> Callable[[SceneRun], SceneRun]:
    """Register ``run`` as a scene; scenes run by ``order`` (the story's order), whatever the
    order their modules happen to be imported in."""

    def register(run: SceneRun) -> SceneRun:
        if name in SCENES:
            raise ValueError(f"scene {name!r} registered twice")
        SCENES[name] = Scene(name, title, expected, run, order)
        return run

    return register


def select(names: Sequence[str]) -> list[Scene]:
    """The scenes asked for (all when none), or ValueError naming the known ones."""
    if not names:
        return sorted(SCENES.values(), key=lambda s: s.order)
    unknown = [n for n in names if n not in SCENES]
    if unknown:
        known = ", ".join(s.name for s in select([]))
        raise ValueError(f"unknown scene {', '.join(unknown)}; known: {known}")
    return sorted((SCENES[n] for n in dict.fromkeys(names)), key=lambda s: s.order)
