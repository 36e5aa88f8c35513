"""A real Asterisk 22 for tests, the demo and benchmarks: a Debian sid root run with chroot.

Why a chroot and not the host's Asterisk: Debian 12 ships no Asterisk 22, and the lab must never
depend on (or disturb) whatever the machine has installed. ``mmdebstrap`` builds a minimal sid root
with the distribution's ``asterisk`` packages in well under a minute; the root is cached outside the
work tree (``lab.root``, default /var/cache/ivr-lab/asterisk-root) so every clone and CI run reuses
it, and Asterisk runs from it as a plain child process (``asterisk -f``), never as a daemon.

Layout on the host::

    /var/cache/ivr-lab/
        asterisk-root/            the sid root (complete, or absent: built beside it, then renamed)
            .ivr-lab-stamp.json   recipe + package versions; a root without it is not trusted
            etc/asterisk/         REPLACED by install_config(): asterisk-config/* + overlay/* +
                                  generated secret files (the package's originals: etc/asterisk.dist)
            run/asterisk/         pid file and control socket (chroot's /var/run is a symlink to
                                  /run: never follow it from the host, it would be the host's /run)
            var/log/asterisk/console.log   Asterisk's console output (log_path)
        state/                    0700: ami-secret, agent-passwords.json (0600), lock files,
                                  tls/asterisk.{crt,key}: the self-signed certificate of Asterisk's
                                  HTTPS server (browser softphones' WSS), made once per lab root

Telephony gotchas handled here: the root's /etc/hosts names the host so Asterisk does not do DNS
for its own name on every call; every socket stays on 127.0.0.1; only one lab Asterisk can run on
a machine (fixed ports 5060 and 5038), so start() first stops a stale one left by an earlier run.

Command line (for humans and scripts)::

    python -m lab.asterisk provision | up | down | restart | status | cli "pjsip show endpoints"
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType

from lab.errors import LabError

__all__ = ["AGI_PORT", "AGI_STANDBY_PORT", "AMI_PORT", "SIP_PORT", "WSS_PORT", "AsteriskLab", "main"]

SIP_PORT = 5060
#: Asterisk's HTTPS server (http.conf): browser softphones' SIP over WSS at wss://127.0.0.1:8089/ws
WSS_PORT = 8089
AMI_PORT = 5038
#: Where the lab's dialplan reaches the controller: node 1 (the product's IVR_AGI default) and the
#: standby node it tries when node 1 is unreachable (IVR_AGI_STANDBY in overlay/extensions_lab.conf).
AGI_PORT = 4573
AGI_STANDBY_PORT = 4583
AMI_HOST = "127.0.0.1"
AMI_USERNAME = "ivr"

DEFAULT_ROOT = Path("/var/cache/ivr-lab/asterisk-root")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
SUITE = "sid"

# What the root is built from. Changing this list (or RECIPE_VERSION) makes provision() rebuild.
# asterisk-core-sounds-en-wav exists in sid (1.6.1): the IVR's built-in prompts in both formats.
# asterisk-moh-opsound-gsm: music on hold for callers waiting in a queue (musiconhold.conf).
# python3 + python3-pip: the process-per-call AGI baseline (pyst2) runs inside the root.
PACKAGES: tuple[str, ...] = (
    "asterisk",
    "asterisk-modules",
    "asterisk-core-sounds-en-gsm",
    "asterisk-core-sounds-en-wav",
    "asterisk-moh-opsound-gsm",
    "python3",
    "python3-pip",
)
RECIPE_VERSION = 1
PIP_PACKAGES: tuple[str, ...] = ("pyst2",)

STAMP_NAME = ".ivr-lab-stamp.json"
ASTERISK_BIN = "/usr/sbin/asterisk"
# Files kept from the distribution's /etc/asterisk when the product does not ship its own: the
# directory layout of this build of Asterisk, and the country tone tables (ringback, busy...).
DIST_FILES_KEPT: tuple[str, ...] = ("asterisk.conf", "indications.conf")
GENERATED_AMI_USERS = "manager_users.conf"
GENERATED_AGENTS_AUTH = "pjsip_agents_auth.conf"
# A secret goes verbatim into an Asterisk .conf line: no comment char, no whitespace, no brackets.
_SAFE_SECRET = re.compile(r"^[A-Za-z0-9_.~+/=@%:,-]{12,128}$")
_AGENT_SECTION = re.compile(r"^\[(?P<name>[A-Za-z0-9_-]+)\]\s*\(agent-endpoint\)", re.MULTILINE)

Progress = Callable[[str], None]


def _stderr_progress(line: str) -> None:
    print(f"[lab] {line}", file=sys.stderr, flush=True)


def _repo_dir() -> Path:
    return Path(__file__).resolve().parents[1]


def _default_root() -> Path:
    """``$IVR_LAB_ROOT`` or the machine-wide cache: the lab is not configured by the product's settings."""
    return lab_root()


def lab_root() -> Path:
    """Where the Debian sid root that runs Asterisk 22 lives (``$IVR_LAB_ROOT`` overrides)."""
    return Path(os.environ.get("IVR_LAB_ROOT") or DEFAULT_ROOT)


def allison_sounds_dir() -> Path | None:
    """Allison's human recordings (asterisk-core-sounds-en-wav) in the lab root, else the host's package.

    Tests use them as real human speech: words a caller says ("agent", digits) recorded by a person.
    """
    for base in (lab_root() / "usr/share/asterisk/sounds", Path("/usr/share/asterisk/sounds")):
        candidate = base / "en_US_f_Allison"
        if (candidate / "digits" / "1.wav").is_file():
            return candidate
    return None


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (an interrupted mmdebstrap can leave /proc mounted)."""
    prefix = str(path.resolve()) + "/"
    found: list[str] = []
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 1:
                point = fields[1].replace("\\040", " ")
                if point == prefix[:-1] or point.startswith(prefix):
                    found.append(point)
    return found


def _remove_tree(path: Path, *, unmount: bool = False) -> None:
    """Delete a (partial) root. Refuses if anything is still mounted inside: rmtree would descend
    into it (the host's /proc, /sys, /dev/pts). With ``unmount``, first detaches those mounts: an
    mmdebstrap interrupted by Ctrl-C leaves proc, sys, dev/pts and dev/shm mounted in its build dir.
    """
    if not path.exists() and not path.is_symlink():
        return
    if unmount:
        for point in sorted(_mounts_under(path), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)
    mounted = _mounts_under(path)
    if mounted:
        raise LabError(f"cannot delete {path}: still mounted inside it: {', '.join(mounted)} (umount them)")
    # rmtree removes symlinks themselves and never follows them (var/run -> /run stays safe).
    shutil.rmtree(path)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_private(path: Path, text: str) -> None:
    """Write a secret file: created 0600 (never world-readable, not even for a moment), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AsteriskLab:
    """One Asterisk 22 in a cached Debian sid root, driven from the host.

    ``with AsteriskLab() as lab:`` provisions (cached), installs the product's config plus the lab
    overlay, starts Asterisk and waits until AMI and PJSIP really answer; leaving the block stops it.
    """

    ami_host = AMI_HOST
    ami_port = AMI_PORT
    ami_username = AMI_USERNAME
    sip_port = SIP_PORT

    def __init__(
        self,
        root: Path | None = None,
        config_dir: Path | None = None,
        *,
        ami_secret: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.root: Path = Path(root) if root is not None else _default_root()
        if not self.root.is_absolute():
            self.root = self.root.resolve()
        self.config_dir: Path = Path(config_dir) if config_dir is not None else _repo_dir() / "asterisk-config"
        self.overlay_dir: Path = Path(__file__).resolve().parent / "overlay"
        self.state_dir: Path = self.root.parent / "state"
        self.log_path: Path = self.root / "var/log/asterisk/console.log"
        self._progress: Progress = progress or _stderr_progress
        self._process: subprocess.Popen[bytes] | None = None
        self.ami_secret: str = self._resolve_ami_secret(ami_secret)
        self.agent_passwords: dict[str, str] = self._load_agent_passwords()

    # ------------------------------------------------------------------ paths inside the root

    def host_path(self, chroot_path: str) -> Path:
        """The host path of ``chroot_path``, resolving symlinks the way the chroot would see them.

        Absolute link targets are re-rooted under ``self.root`` (so sounds/en ->
        /etc/alternatives/... -> /usr/share/... stays inside), never followed on the host.
        """
        parts = list(PurePosixPath("/", chroot_path).parts[1:])
        resolved = PurePosixPath("/")
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                resolved = resolved.parent
                continue
            candidate = resolved / part
            host = self.root / str(candidate).lstrip("/")
            if host.is_symlink():
                hops += 1
                if hops > 40:
                    raise LabError(f"too many symlinks resolving {chroot_path} in {self.root}")
                target = PurePosixPath(os.readlink(host))
                if target.is_absolute():
                    resolved = PurePosixPath("/")
                    parts = list(target.parts[1:]) + parts
                else:
                    parts = list(target.parts) + parts
                continue
            resolved = candidate
        return self.root / str(resolved).lstrip("/")

    @property
    def sounds_dir(self) -> Path:
        """Host path of Asterisk's sounds for language "en" (``ivr prompts build`` writes ivr/*.wav here).

        In Debian this is /usr/share/asterisk/sounds/en -> /etc/alternatives/asterisk-prompt-en ->
        /usr/share/asterisk/sounds/en_US_f_Allison; files put there are STREAM FILE ivr/<name>.
        """
        return self.host_path("/usr/share/asterisk/sounds/en")

    @property
    def pid_file(self) -> Path:
        return self.root / "run/asterisk/asterisk.pid"

    @property
    def etc_dir(self) -> Path:
        return self.root / "etc/asterisk"

    @property
    def stamp_path(self) -> Path:
        return self.root / STAMP_NAME

    # ------------------------------------------------------------------ secrets

    def _resolve_ami_secret(self, explicit: str | None) -> str:
        if explicit:
            return self._check_secret(explicit, "ami_secret argument")
        env = os.environ.get("IVR_AMI_SECRET", "")
        if env:
            return self._check_secret(env, "IVR_AMI_SECRET")
        path = self.state_dir / "ami-secret"
        with contextlib.suppress(FileNotFoundError):
            stored = path.read_text().strip()
            if stored:
                return self._check_secret(stored, str(path))
        secret = secrets.token_urlsafe(24)
        self._ensure_state_dir()
        _write_private(path, secret + "\n")
        return secret

    @staticmethod
    def _check_secret(value: str, source: str) -> str:
        if not _SAFE_SECRET.match(value):
            raise LabError(
                f"{source}: unusable as an Asterisk secret (12-128 characters of A-Z a-z 0-9 and _.~+/=@%:,-)"
            )
        return value

    def _agent_names(self) -> list[str]:
        """Agent endpoints declared in the product's pjsip.conf (sections using the agent template)."""
        with contextlib.suppress(FileNotFoundError):
            return _AGENT_SECTION.findall((self.config_dir / "pjsip.conf").read_text())
        return []

    def _load_agent_passwords(self) -> dict[str, str]:
        path = self.state_dir / "agent-passwords.json"
        stored: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                stored = {str(k): str(v) for k, v in data.items() if _SAFE_SECRET.match(str(v))}
        wanted = self._agent_names()
        missing = [name for name in wanted if name not in stored]
        for name in missing:
            stored[name] = secrets.token_urlsafe(18)
        if missing:
            self._ensure_state_dir()
            _write_private(path, json.dumps(stored, indent=2, sort_keys=True) + "\n")
        return {name: stored[name] for name in wanted}

    def _ensure_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)

    # ------------------------------------------------------------------ provisioning

    def _recipe(self) -> dict[str, object]:
        return {
            "recipe_version": RECIPE_VERSION,
            "suite": SUITE,
            "mirror": DEBIAN_MIRROR,
            "packages": list(PACKAGES),
        }

    def read_stamp(self) -> dict[str, object] | None:
        """The stamp of a completely built root, or None (absent, unreadable: not a good root)."""
        try:
            data = json.loads(self.stamp_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _root_is_current(self) -> bool:
        stamp = self.read_stamp()
        if stamp is None:
            return False
        recipe = self._recipe()
        return all(stamp.get(key) == value for key, value in recipe.items())

    def provision(self) -> None:
        """Build the root if it is missing or from an older recipe (cached), then make it runnable.

        Idempotent and fast the second time (a stamp check, a hosts line, a pyst2 check).
        """
        started = time.monotonic()
        self._ensure_state_dir()
        with _file_lock(self.state_dir / "provision.lock"):
            if self._root_is_current():
                self._progress(f"root {self.root} is ready (cached)")
            else:
                self._build_root()
            self._ensure_run_dir()
            self._ensure_hosts()
            self._ensure_pip_packages()
        self._progress(f"provisioned in {time.monotonic() - started:.1f}s")

    def _build_root(self) -> None:
        if shutil.which("mmdebstrap") is None:
            raise LabError("mmdebstrap is not installed (apt-get install -y mmdebstrap)")
        if os.geteuid() != 0:
            raise LabError("building the lab root needs root (mmdebstrap root mode, chroot)")
        parent = self.root.parent
        parent.mkdir(parents=True, exist_ok=True)
        # Leftovers of interrupted builds (we hold the provision lock, so none is in progress).
        for stale in parent.glob(f".{self.root.name}.*"):
            self._progress(f"removing leftover {stale}")
            _remove_tree(stale, unmount=True)
        build = parent / f".{self.root.name}.build-{os.getpid()}"
        self._progress(f"building Debian {SUITE} root with Asterisk in {build} (about a minute)")
        command = [
            "mmdebstrap",
            "--variant=apt",
            "--mode=root",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            "--include=" + ",".join(PACKAGES),
            SUITE,
            str(build),
            DEBIAN_MIRROR,
        ]
        started = time.monotonic()
        try:
            self._run_streaming(command, "mmdebstrap")
            self._finish_root(build)
        except BaseException:
            with contextlib.suppress(Exception):
                _remove_tree(build, unmount=True)
            raise
        if self.root.exists() or self.root.is_symlink():
            self.stop()  # an Asterisk still running from the old root
            old = parent / f".{self.root.name}.old-{os.getpid()}"
            os.rename(self.root, old)
            os.rename(build, self.root)
            _remove_tree(old, unmount=True)
        else:
            os.rename(build, self.root)
        self._progress(f"root built in {time.monotonic() - started:.0f}s: {self.root}")

    def _finish_root(self, build: Path) -> None:
        """Post-install steps done before the rename, so a root with a stamp is a complete root."""
        etc = build / "etc/asterisk"
        dist = build / "etc/asterisk.dist"
        if not etc.is_dir() or etc.is_symlink():
            raise LabError(f"{etc} missing after mmdebstrap: the asterisk package did not install")
        shutil.copytree(etc, dist, symlinks=True)
        versions = self._package_versions(build)
        missing = [p for p in PACKAGES if p not in versions]
        if missing:
            raise LabError(f"packages missing from the root: {', '.join(missing)}")
        stamp = dict(self._recipe())
        stamp["versions"] = versions
        stamp["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        (build / STAMP_NAME).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")

    @staticmethod
    def _package_versions(root: Path) -> dict[str, str]:
        result = subprocess.run(
            ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *PACKAGES],
            capture_output=True,
            text=True,
            check=False,
        )
        versions: dict[str, str] = {}
        for line in result.stdout.splitlines():
            name, _, version = line.partition("\t")
            if version:
                versions[name] = version
        return versions

    def _run_streaming(self, command: Sequence[str], label: str, timeout: float = 900) -> None:
        """Run a long command, passing its progress lines on; raise LabError with its tail on failure."""
        tail: list[str] = []
        with subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        ) as proc:
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout
            for raw in proc.stdout:
                line = raw.rstrip()
                if not line:
                    continue
                tail = [*tail[-30:], line]
                if line.startswith(("I:", "E:", "W:")):
                    self._progress(f"{label}: {line}")
                if time.monotonic() > deadline:
                    proc.kill()
                    raise LabError(f"{label} took longer than {timeout:.0f}s")
            code = proc.wait()
        if code != 0:
            raise LabError(f"{label} failed (exit {code}):\n" + "\n".join(tail))

    def _ensure_run_dir(self) -> None:
        # ROOT/var/run is a symlink to /run: create ROOT/run/asterisk directly, never via var/run.
        run = self.root / "run"
        if run.is_symlink() or not run.is_dir():
            raise LabError(f"{run} is not a directory inside the root")
        (run / "asterisk").mkdir(exist_ok=True)

    def _ensure_hosts(self) -> None:
        """Name this host in the root's /etc/hosts: Asterisk resolves its own name on every call."""
        hosts = self.root / "etc/hosts"
        hostname = socket.gethostname()
        wanted = f"127.0.0.1\tlocalhost {hostname}"
        lines = [] if hosts.is_symlink() else hosts.read_text().splitlines() if hosts.exists() else []
        if wanted in lines:
            return
        kept = [line for line in lines if not line.split() or line.split()[0] != "127.0.0.1"]
        if hosts.is_symlink():
            hosts.unlink()
        hosts.write_text("\n".join([wanted, *kept]) + "\n")
        self._progress(f"root /etc/hosts: {wanted.expandtabs(1)}")

    def _pip_installed(self, name: str) -> bool:
        module = {"pyst2": "asterisk/agi.py"}.get(name, name)
        return any(self.root.glob(f"usr/local/lib/python3*/dist-packages/{module}"))

    def _ensure_pip_packages(self) -> None:
        for name in PIP_PACKAGES:
            if self._pip_installed(name):
                continue
            self._progress(f"installing {name} into the root")
            self._pip_install(name)
            if not self._pip_installed(name):
                raise LabError(f"{name} did not install into {self.root}")

    def _pip_install(self, name: str) -> None:
        """Download the wheels with the host's pip (its index and CA settings), install them offline.

        The chroot shares the host's network but not its pip configuration or CA bundle, so a
        direct ``pip install`` in the root may fail behind a TLS-inspecting proxy; it is the
        second choice.
        """
        wheels = self.root / "tmp/ivr-lab-wheels"
        _remove_tree(wheels)
        wheels.mkdir(parents=True)
        try:
            download = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(wheels), name],
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            files = sorted(wheels.glob("*.whl"))
            if download.returncode == 0 and files:
                command = [
                    "python3",
                    "-m",
                    "pip",
                    "install",
                    "--break-system-packages",
                    "--no-index",
                    "--no-deps",
                    "--root-user-action=ignore",
                    "--disable-pip-version-check",
                    *[f"/tmp/ivr-lab-wheels/{f.name}" for f in files],
                ]
            else:
                self._progress(f"host pip download failed, trying pip inside the root: {download.stderr[-300:]}")
                command = [
                    "python3",
                    "-m",
                    "pip",
                    "install",
                    "--break-system-packages",
                    "--no-cache-dir",
                    "--root-user-action=ignore",
                    "--disable-pip-version-check",
                    name,
                ]
            result = subprocess.run(
                ["chroot", str(self.root), "env", "HOME=/root", *command],
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if result.returncode != 0:
                raise LabError(
                    f"pip install {name} in the root failed:\n{result.stdout[-1500:]}{result.stderr[-1500:]}"
                )
        finally:
            _remove_tree(wheels)

    # ------------------------------------------------------------------ configuration

    def install_config(self) -> None:
        """Make ROOT/etc/asterisk exactly: the product's files + the lab overlay + generated secrets.

        The directory is rebuilt from scratch each time, so no sample file from the package (which
        would, e.g., open IAX2 on 0.0.0.0) influences the lab: what runs is what the product ships.
        """
        if not self._root_is_current():
            raise LabError(f"no usable lab root at {self.root}: run provision() first")
        if not self.config_dir.is_dir():
            raise LabError(f"product config dir {self.config_dir} does not exist")
        etc = self.etc_dir
        dist = self.root / "etc/asterisk.dist"
        if etc.is_symlink():
            etc.unlink()
        staging = self.root / "etc/.asterisk.new"
        _remove_tree(staging)
        staging.mkdir(mode=0o755)
        product = sorted(p for p in self.config_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        overlay = sorted(p for p in self.overlay_dir.iterdir() if p.is_file() and p.suffix == ".conf")
        shipped = {p.name for p in product}
        for name in DIST_FILES_KEPT:
            if name not in shipped and (dist / name).is_file():
                shutil.copyfile(dist / name, staging / name)
        for source in [*product, *overlay]:
            shutil.copyfile(source, staging / source.name)
        _write_private(staging / GENERATED_AMI_USERS, self._ami_users_conf())
        _write_private(staging / GENERATED_AGENTS_AUTH, self._agents_auth_conf())
        cert, key = self.tls_certificate()
        (staging / "keys").mkdir(mode=0o700)
        shutil.copyfile(cert, staging / "keys/asterisk.crt")
        _write_private(staging / "keys/asterisk.key", key.read_text())
        old = self.root / "etc/.asterisk.old"
        _remove_tree(old)
        if etc.exists():
            os.rename(etc, old)
        os.rename(staging, etc)
        _remove_tree(old)
        self._progress(f"installed {len(product)} product + {len(overlay)} lab config files into {etc}")

    def tls_certificate(self) -> tuple[Path, Path]:
        """The lab's certificate and key for Asterisk's HTTPS server, made once per lab root.

        Self-signed for 127.0.0.1 and localhost (subjectAltName: browsers ignore the CN), ten
        years, kept in the state directory so every install_config() installs the same one and a
        test's browser may be told to trust exactly it.
        """
        tls = self.state_dir / "tls"
        cert, key = tls / "asterisk.crt", tls / "asterisk.key"
        if cert.is_file() and key.is_file():
            return cert, key
        self._ensure_state_dir()
        tls.mkdir(mode=0o700, exist_ok=True)
        with _file_lock(self.state_dir / "tls.lock"):
            if not (cert.is_file() and key.is_file()):
                result = subprocess.run(
                    [
                        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                        "-subj", "/CN=ivr-lab asterisk",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", str(key.with_suffix(".key.new")), "-out", str(cert.with_suffix(".crt.new")),
                    ],
                    capture_output=True, text=True, check=False, timeout=60,
                )  # fmt: skip
                if result.returncode != 0:
                    raise LabError(f"openssl could not make the lab certificate: {result.stderr.strip()[-500:]}")
                os.chmod(key.with_suffix(".key.new"), 0o600)
                os.replace(key.with_suffix(".key.new"), key)
                os.replace(cert.with_suffix(".crt.new"), cert)
                self._progress(f"made the lab's TLS certificate {cert}")
        return cert, key

    def _ami_users_conf(self) -> str:
        return (
            "; GENERATED by lab.asterisk.install_config() -- do not edit, do not commit.\n"
            "; The controller's AMI account. Loopback only.\n"
            f"[{self.ami_username}]\n"
            f"secret = {self.ami_secret}\n"
            "deny = 0.0.0.0/0.0.0.0\n"
            "permit = 127.0.0.1/255.255.255.255\n"
            "read = all\n"
            "write = all\n"
            "writetimeout = 1000\n"
            "; Per-call dialplan noise the controller never uses (thousands of events/s under load):\n"
            "eventfilter(action(exclude),name(VarSet)) =\n"
            "eventfilter(action(exclude),name(Newexten)) =\n"
        )

    def _agents_auth_conf(self) -> str:
        lines = ["; GENERATED by lab.asterisk.install_config() -- do not edit, do not commit.", ""]
        for name, password in self.agent_passwords.items():
            lines += [
                f"[{name}-auth]",
                "type = auth",
                "auth_type = digest",
                f"username = {name}",
                f"password = {password}",
                "",
            ]
        return "\n".join(lines)

    # ------------------------------------------------------------------ processes

    def _asterisk_pids(self) -> list[int]:
        """Host pids of Asterisk processes (server or remote consoles) whose root is this lab root."""
        root = str(self.root.resolve()) if self.root.exists() else str(self.root)
        pids: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "root") != root:
                    continue
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == "asterisk":
                pids.append(int(entry.name))
        return pids

    def _server_pid(self) -> int | None:
        """The pid of this root's Asterisk server, from its pid file, if that process is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid in self._asterisk_pids() else None

    def server_pid(self) -> int | None:
        """Host pid of this root's running Asterisk server (for CPU accounting in benchmarks)."""
        return self._server_pid()

    def is_running(self) -> bool:
        if self._process is not None and self._process.poll() is None:
            return True
        return self._server_pid() is not None

    def _foreign_asterisk(self) -> list[str]:
        """Asterisk processes of another root or of the host (they would hold ports 5060/5038)."""
        ours = set(self._asterisk_pids())
        found: list[str] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in ours:
                continue
            try:
                if (entry / "comm").read_text().strip() != "asterisk":
                    continue
                found.append(f"pid {entry.name} (root {os.readlink(entry / 'root')})")
            except OSError:
                continue
        return found

    def start(self, timeout: float = 60) -> None:
        """Start Asterisk as a child process (foreground mode, output to log_path) and wait until ready."""
        if not self._root_is_current():
            raise LabError(f"no usable lab root at {self.root}: run provision() first")
        if not (self.etc_dir / GENERATED_AMI_USERS).exists():
            raise LabError(f"no config in {self.etc_dir}: run install_config() first")
        if self.is_running() or self._asterisk_pids():
            self._progress("stopping a stale lab Asterisk first")
            self.stop()
        foreign = self._foreign_asterisk()
        if foreign:
            raise LabError(
                "another Asterisk is running on this machine and would hold ports 5060/5038: " + ", ".join(foreign)
            )
        self._ensure_run_dir()
        for leftover in ("asterisk.pid", "asterisk.ctl"):
            with contextlib.suppress(FileNotFoundError):
                (self.root / "run/asterisk" / leftover).unlink()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The lab's logs are per run: benchmarks write many lines, and a test reading a log must
        # not match a line left by an earlier run.
        for name in ("messages.log", "queue_log"):
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self.log_path.parent / name, 0)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
        }
        self._progress(f"starting Asterisk (log: {self.log_path})")
        # -f: stay in the foreground (a child we own, not a daemon); -n: no ANSI colours in the log.
        # stdin is /dev/null, so nothing ever waits for a terminal. Runs as root inside the chroot.
        self._process = subprocess.Popen(
            ["chroot", str(self.root), ASTERISK_BIN, "-f", "-n"],
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in the test's terminal reaches us, not Asterisk
        )
        os.close(log_fd)
        try:
            self.wait_ready(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout: float) -> None:
        """Return when Asterisk is fully booted, AMI accepts our login and PJSIP has the trunk."""
        deadline = time.monotonic() + timeout
        last = "not started"
        stage = "boot"
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise LabError(
                    f"Asterisk exited with code {self._process.returncode} while starting:\n{self.log_tail()}"
                )
            try:
                if stage == "boot":
                    self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                    stage = "ami"
                if stage == "ami":
                    if not self.ami_login_succeeds():
                        raise LabError(f"AMI refused user {self.ami_username!r} with the lab secret")
                    stage = "pjsip"
                if stage == "pjsip":
                    endpoints = self.cli("pjsip show endpoints")
                    if re.search(r"Endpoint:\s+trunk\b", endpoints):
                        return
                    last = "trunk endpoint not listed yet"
            except LabError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise LabError(f"Asterisk not ready after {timeout:.0f}s (at {stage}: {last}):\n{self.log_tail()}")
            time.sleep(0.2)

    def ami_login_succeeds(self, secret: str | None = None, username: str | None = None, timeout: float = 5) -> bool:
        """Log in to AMI over a raw TCP socket: True on "Response: Success", False on an error reply.

        Raises LabError if nothing answers (connection refused, no banner, timeout).
        """
        user = username or self.ami_username
        password = self.ami_secret if secret is None else secret
        try:
            with socket.create_connection((self.ami_host, self.ami_port), timeout=timeout) as sock:
                reader = sock.makefile("rb")
                banner = reader.readline()
                if not banner.startswith(b"Asterisk Call Manager"):
                    raise LabError(f"unexpected AMI banner {banner!r}")
                sock.sendall(
                    (
                        "Action: Login\r\nActionID: lab-login\r\n"
                        f"Username: {user}\r\nSecret: {password}\r\nEvents: off\r\n\r\n"
                    ).encode()
                )
                reply: dict[str, str] = {}
                while True:
                    line = reader.readline()
                    if not line:
                        raise LabError("AMI closed the connection during login")
                    text = line.decode(errors="replace").strip()
                    if not text:
                        if reply:
                            break
                        continue
                    key, _, value = text.partition(":")
                    reply[key.strip()] = value.strip()
                ok = reply.get("Response") == "Success"
                with contextlib.suppress(OSError):
                    sock.sendall(b"Action: Logoff\r\n\r\n")
                return ok
        except OSError as exc:
            raise LabError(f"AMI at {self.ami_host}:{self.ami_port}: {exc}") from exc

    def cli(self, command: str, timeout: float = 30) -> str:
        """Run one Asterisk CLI command (``asterisk -rx``) in the root and return its output."""
        try:
            result = subprocess.run(
                ["chroot", str(self.root), ASTERISK_BIN, "-rx", command],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "TERM": "dumb"},
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"asterisk -rx {command!r} timed out after {timeout:.0f}s") from exc
        if result.returncode != 0:
            raise LabError(f"asterisk -rx {command!r} failed: {(result.stdout + result.stderr).strip()}")
        return result.stdout

    def hang_up_caller(self, caller_id: str) -> int:
        """Hang up every channel whose caller id number is ``caller_id`` (an agent's leg that app_queue
        dialled for that caller may carry it too); returns how many.

        Why: a test's scripted caller (SIPp) hangs up at a time fixed before the call starts, with a
        margin for a busy machine; a test that knows the moment its check is settled (the journey
        reached its step) ends the call then instead, as the caller's BYE would. None found (the
        call already ended) is no error: the caller's own bound came first.
        """
        found = 0
        for line in self.cli("core show channels concise").splitlines():
            fields = line.split("!")
            if len(fields) > 7 and fields[7] == caller_id:
                with contextlib.suppress(LabError):  # it may end on its own meanwhile
                    self.cli(f"channel request hangup {fields[0]}")
                    found += 1
        return found

    def stop(self, timeout: float = 15) -> None:
        """Stop this root's Asterisk: ``core stop now``, then SIGTERM, then SIGKILL. Idempotent."""
        deadline = time.monotonic() + timeout
        if self.is_running():
            with contextlib.suppress(LabError):
                self.cli("core stop now", timeout=max(1.0, min(5.0, timeout / 3)))
            self._wait_gone(min(deadline, time.monotonic() + timeout / 2))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._asterisk_pids()
            if self._process is not None and self._process.poll() is None:
                pids.append(self._process.pid)  # the chroot wrapper, in the instant before exec
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            self._wait_gone(deadline if sig == signal.SIGTERM else time.monotonic() + 5)
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
            self._process = None
        if self._asterisk_pids():
            raise LabError(f"Asterisk of {self.root} did not stop: pids {self._asterisk_pids()}")
        for leftover in ("asterisk.pid", "asterisk.ctl"):
            with contextlib.suppress(OSError):
                (self.root / "run/asterisk" / leftover).unlink()

    def _wait_gone(self, until: float) -> None:
        while time.monotonic() < until:
            if self._process is not None:
                self._process.poll()
            if not self._asterisk_pids() and (self._process is None or self._process.returncode is not None):
                return
            time.sleep(0.1)

    def restart(self) -> None:
        self.stop()
        self.start()

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> AsteriskLab:
        self.provision()
        self.install_config()
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------- command line


def _status(lab: AsteriskLab) -> int:
    stamp = lab.read_stamp()
    print(f"root:      {lab.root} ({'ready' if stamp else 'not provisioned'})")
    if stamp:
        versions = stamp.get("versions")
        if isinstance(versions, dict):
            print(f"asterisk:  {versions.get('asterisk', '?')}")
        print(f"built:     {stamp.get('built_at', '?')}")
    print(f"sounds:    {lab.sounds_dir}")
    print(f"log:       {lab.log_path}")
    print(f"state:     {lab.state_dir}")
    pid = lab._server_pid()
    if pid is None:
        print("running:   no")
        return 3
    print(f"running:   yes (pid {pid}); SIP 127.0.0.1:{SIP_PORT}, AMI 127.0.0.1:{AMI_PORT} user {lab.ami_username}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab.asterisk",
        description="The lab's Asterisk 22 (Debian sid root, run with chroot).",
    )
    parser.add_argument("--root", type=Path, help="lab root (default: lab.root setting)")
    parser.add_argument("--config-dir", type=Path, help="product config dir (default: asterisk-config/)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("provision", help="build (or check) the cached root")
    sub.add_parser("up", help="provision, install config, start; leaves Asterisk running")
    sub.add_parser("down", help="stop the lab Asterisk (idempotent)")
    sub.add_parser("restart", help="install config again and restart")
    sub.add_parser("status", help="show the root and whether Asterisk runs (exit 3 if not)")
    p_cli = sub.add_parser("cli", help="run an Asterisk CLI command, e.g. cli pjsip show endpoints")
    p_cli.add_argument("words", nargs="+")
    args = parser.parse_args(argv)

    try:
        lab = AsteriskLab(args.root, args.config_dir)
        if args.command == "provision":
            lab.provision()
        elif args.command == "up":
            lab.provision()
            lab.install_config()
            lab.start()
            print(f"Asterisk is up: SIP 127.0.0.1:{SIP_PORT}, AMI 127.0.0.1:{AMI_PORT} (user {lab.ami_username})")
            print(f"AMI secret in {lab.state_dir / 'ami-secret'}; stop with: python -m lab.asterisk down")
        elif args.command == "down":
            lab.stop()
        elif args.command == "restart":
            lab.stop()
            lab.install_config()
            lab.start()
        elif args.command == "status":
            return _status(lab)
        elif args.command == "cli":
            print(lab.cli(" ".join(args.words)), end="")
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
