"""The product as a user installs it: the wheel built from this repository, in a fresh virtualenv.

The checkout puts ``lab`` and the repository root on the path of ``.venv`` (``ivr-checkout.pth``),
so a test run from the checkout cannot see a module that works only there. This one builds the
wheel from a copy of the repository, installs it with ``--no-deps`` into a new venv whose only
other path entry is the dependencies' site-packages (a bare path line: the checkout's ``.pth``
files there are not processed), and runs ``ivr check`` and ``ivr serve`` from that venv, outside
the checkout: no ``lab``, no tests, the package data it needs inside the wheel.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOT_SOURCE = (
    ".venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
)
FLOW = """\
flow: hello
numbers: ["5550100"]
start: bye
steps:
  bye:
    hangup: {}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from a clean copy of the repository (build dirs stay out of the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(source)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("ivr-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with only the wheel installed; the dependencies come from this interpreter's site-packages."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--quiet", str(wheel)],
        check=True,
        timeout=300,
    )
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "zz-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield root


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("IVR_", "PYTHON", "VIRTUAL_ENV"))}
    return {**keep, "HOME": str(tmp), **extra}


def test_the_wheel_holds_the_product_and_nothing_of_the_harness(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"ivr", "ivr-0.1.0.dist-info"}, tops  # no lab/, tests/, bench/ or dialplans/
    for data in ("ivr/py.typed", "ivr/store/migrations/script.py.mako"):
        assert data in names
    assert any(n.startswith("ivr/web/static/desktop/") for n in names)
    assert "ivr/web/static/studio/studio.js" in names and "ivr/web/static/studio/index.html" in names
    assert any(n.startswith("ivr/store/migrations/versions/") for n in names)


def test_the_installed_wheel_imports_from_the_venv_and_has_no_lab(venv: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util, ivr, sys\n"
        "print(ivr.__file__)\n"
        "print(importlib.util.find_spec('lab') is None and importlib.util.find_spec('tests') is None)\n"
    )
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", probe],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0].startswith(str(venv)), out  # the wheel's copy, not the checkout's
    assert out[1] == "True", "the harness is importable from the installed product"


def test_ivr_check_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hello.yaml").write_text(FLOW)
    good = subprocess.run(
        [str(venv / "bin/ivr"), "check", str(flows)], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True
    )
    assert good.returncode == 0 and "ok: hello@" in good.stderr, good.stderr
    (flows / "broken.yaml").write_text("flow: broken\nstart: nowhere\nsteps: {}\n")
    bad = subprocess.run(
        [str(venv / "bin/ivr"), "check", str(flows)], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True
    )
    assert bad.returncode == 1 and "broken.yaml" in bad.stdout, (bad.stdout, bad.stderr)


def test_ivr_serve_from_the_wheel_answers_fastagi_and_stops_on_sigterm(venv: Path, tmp_path: Path) -> None:
    flows, data = tmp_path / "flows", tmp_path / "data"
    flows.mkdir()
    (flows / "hello.yaml").write_text(FLOW)
    port = _free_port()
    env = _env(
        tmp_path,
        IVR_FLOWS_DIR=str(flows),
        IVR_FLOWS_DEFAULT="hello",
        IVR_DATA_DIR=str(data),
        IVR_AGI_HOST="127.0.0.1",
        IVR_AGI_PORT=str(port),
        IVR_WEB_PORT="0",
        IVR_SPEECH_ENGINE="off",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(venv / "bin/ivr"), "serve"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                agi = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, f"FastAGI not listening after 60 s:\n{log.read_text()}"
                time.sleep(0.2)
        with agi:
            # A minimal FastAGI session as Asterisk opens it: the environment, then a blank line.
            agi.sendall(
                b"agi_network: yes\nagi_network_script: inbound\nagi_request: agi://127.0.0.1/inbound\n"
                b"agi_channel: PJSIP/trunk-00000001\nagi_uniqueid: 1732560000.1\nagi_callerid: 5551234\n"
                b"agi_dnid: 5550100\nagi_extension: 5550100\nagi_context: from-trunk\n\n"
            )
            agi.settimeout(10)
            first = agi.recv(4096)
        assert first.endswith(b"\n") and first.split()[0].isupper(), first  # an AGI command, e.g. ANSWER
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert "Traceback" not in log.read_text(), log.read_text()
