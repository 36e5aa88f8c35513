"""Start and stop docker/compose.yaml's services with plain podman commands.

Why not podman-compose: Debian 12's (1.0.3) adds a project network to host-network services
(podman refuses: "cannot set multiple networks without bridge network mode"), leaves
``${VAR:-}`` uninterpolated and knows no profiles. The stack needs only a small part of the
compose format, so this reads exactly that part (image, environment, secrets, volumes,
network_mode host, restart, profiles) and refuses anything else it finds, so the file and this
runner cannot drift apart silently.

    python3 docker/compose.py PROJECT up [--profile NAME ...] [SERVICE ...] | down [-v] | ps | logs SERVICE
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
KNOWN = {"image", "build", "network_mode", "restart", "depends_on", "secrets", "environment", "volumes", "profiles"}
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """``${NAME}`` and ``${NAME:-default}`` as compose does (unset or empty takes the default)."""
    return _VAR.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), value)


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((HERE / "compose.yaml").read_text())
    return data


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], text=True, check=check)


def up(project: str, profiles: set[str], only: set[str], env: dict[str, str]) -> None:
    compose = load()
    label = f"io.ivr.compose.project={project}"
    for name, service in compose["services"].items():
        if service.get("profiles") and not set(service["profiles"]) & profiles:
            continue
        if only and name not in only:
            continue
        unknown = set(service) - KNOWN
        if unknown:
            sys.exit(f"compose.py: service {name}: {sorted(unknown)} not supported here")
        if service.get("network_mode") != "host":
            sys.exit(f"compose.py: service {name}: only network_mode: host is supported")
        container = f"{project}_{name}_1"
        podman("rm", "-f", "--ignore", container)
        args = ["run", "-d", "--name", container, "--label", label, "--network", "host"]
        if "restart" in service:
            args += ["--restart", service["restart"]]
        for key, value in (service.get("environment") or {}).items():
            args += ["-e", f"{key}={interpolate(str(value), env)}"]
        for secret in service.get("secrets", []):
            source = Path(interpolate(compose["secrets"][secret]["file"], env))
            source = source if source.is_absolute() else HERE / source
            args += ["-v", f"{source}:/run/secrets/{secret}:ro"]
        for volume in service.get("volumes", []):
            source, target, *mode = interpolate(volume, env).split(":")
            if source in compose.get("volumes", {}):
                named = f"{project}_{source}"
                if podman("volume", "exists", named, check=False).returncode != 0:
                    podman("volume", "create", "--label", label, named)
                source = named
            elif not Path(source).is_absolute():
                source = str((HERE / source).resolve())
            args += ["-v", ":".join([source, target, *mode])]
        args.append(interpolate(service["image"], env))
        print(f"compose.py: starting {container}", file=sys.stderr)
        podman(*args)


def down(project: str, volumes: bool) -> None:
    label = f"label=io.ivr.compose.project={project}"
    names = subprocess.run(
        ["podman", "ps", "-a", "-q", "--filter", label], text=True, capture_output=True, check=True
    ).stdout.split()
    if names:
        podman("rm", "-f", "-v", "-t", "10", *names)
    if volumes:
        found = subprocess.run(
            ["podman", "volume", "ls", "-q", "--filter", label], text=True, capture_output=True, check=True
        ).stdout.split()
        if found:
            podman("volume", "rm", "-f", *found)


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    project, command, rest = argv[0], argv[1], argv[2:]
    env = dict(os.environ)
    if command == "up":
        profiles = {rest[i + 1] for i, arg in enumerate(rest[:-1]) if arg == "--profile"}
        only = {arg for i, arg in enumerate(rest) if arg != "--profile" and (i == 0 or rest[i - 1] != "--profile")}
        up(project, profiles, only, env)
    elif command == "down":
        down(project, "-v" in rest)
    elif command == "ps":
        podman("ps", "-a", "--filter", f"label=io.ivr.compose.project={project}")
    elif command == "logs" and rest:
        podman("logs", f"{project}_{rest[0]}_1")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
