"""Start and stop docker/compose.yaml's services with plain podman commands.

Why not podman-compose: Debian 12's (1.0.3) adds a project network to host-network services
(podman refuses: "cannot set multiple networks without bridge network mode"), leaves
``${VAR:-}`` uninterpolated and knows no profiles. The stack needs only a small part of the
compose format, so this reads exactly that part (image, environment, secrets, volumes,
network_mode host, restart, profiles, depends_on) and refuses anything else it finds, so the file
and this runner cannot drift apart silently.

Health without systemd: podman schedules an image's HEALTHCHECK with a systemd timer, and there
is no systemd here, so nothing would ever run the checks and a container would stay "starting".
This runner runs them itself (``podman healthcheck run``, which also records the result podman
shows): while ``up`` waits for a service a later one ``depends_on`` with ``condition:
service_healthy`` (services start in dependency order), and for every running container before
``ps`` prints the table. Docker's daemon runs the checks on its own schedule instead.

    python3 docker/compose.py PROJECT up [--profile NAME ...] [SERVICE ...] | down [-v] | ps | logs SERVICE
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
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


CONDITIONS = ("service_started", "service_healthy")


def depends_on(name: str, service: dict[str, Any]) -> dict[str, str]:
    """The services ``name`` waits for, each with its condition: compose's list form means
    ``service_started``; the mapping form names ``condition``. Refuses other conditions."""
    found = service.get("depends_on") or {}
    if isinstance(found, list):
        return {str(dep): "service_started" for dep in found}
    out: dict[str, str] = {}
    for dep, spec in found.items():
        condition = str((spec or {}).get("condition", "service_started"))
        if condition not in CONDITIONS:
            sys.exit(f"compose.py: service {name}: depends_on {dep}: condition {condition} not supported here")
        out[str(dep)] = condition
    return out


def start_order(services: dict[str, dict[str, Any]], chosen: list[str]) -> list[str]:
    """``chosen`` (in the file's order) with every service after those it depends on that are
    also chosen (the others must be running already); exits on a cycle or an unknown name."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            sys.exit(f"compose.py: depends_on cycle through {name}")
        visiting.add(name)
        for dep in depends_on(name, services[name]):
            if dep not in services:
                sys.exit(f"compose.py: service {name} depends on {dep}, which compose.yaml does not define")
            if dep in chosen:
                visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in chosen:
        visit(name)
    return order


def health_timeout(image: str) -> float | None:
    """Seconds a container of ``image`` may take to become healthy (start period + retries x
    interval, + 30 s), or None when the image has no health check."""
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{json .Config.Healthcheck}}", image],
        text=True,
        capture_output=True,
        check=False,
    )
    check = json.loads(out.stdout or "null") if out.returncode == 0 else None
    if not check or not check.get("Test") or check["Test"][0] == "NONE":
        return None
    ns = 1e-9
    return float(check.get("StartPeriod", 0) + check.get("Retries", 3) * check.get("Interval", 30e9)) * ns + 30.0


def run_health_check(container: str) -> bool:
    """One run of ``container``'s health check, recorded by podman (what ``ps`` shows)."""
    out = subprocess.run(["podman", "healthcheck", "run", container], text=True, capture_output=True, check=False)
    return out.returncode == 0


def wait_healthy(container: str, image: str) -> None:
    """Run the health check until it passes (exit when it does not within its time)."""
    timeout = health_timeout(image)
    if timeout is None:
        sys.exit(f"compose.py: {container} has no health check to wait for (condition: service_healthy)")
    started = time.monotonic()
    while not run_health_check(container):
        if time.monotonic() - started > timeout:
            logs = subprocess.run(["podman", "logs", "--tail", "20", container], text=True, capture_output=True)
            sys.exit(f"compose.py: {container} not healthy after {timeout:.0f} s:\n{logs.stdout}{logs.stderr}")
        time.sleep(1.0)
    print(f"compose.py: {container} healthy after {time.monotonic() - started:.1f} s", file=sys.stderr)


def running(container: str) -> bool:
    out = subprocess.run(
        ["podman", "inspect", "--format", "{{.State.Running}}", container], text=True, capture_output=True, check=False
    )
    return out.stdout.strip() == "true"


def up(project: str, profiles: set[str], only: set[str], env: dict[str, str]) -> None:
    compose = load()
    label = f"io.ivr.compose.project={project}"
    services: dict[str, dict[str, Any]] = compose["services"]
    chosen = [
        name
        for name, service in services.items()
        if not (service.get("profiles") and not set(service["profiles"]) & profiles) and (not only or name in only)
    ]
    for name in start_order(services, chosen):
        service = services[name]
        for dep, condition in depends_on(name, service).items():
            needed = f"{project}_{dep}_1"
            if not running(needed):
                sys.exit(f"compose.py: {name} depends on {dep}, which is not running ({needed})")
            if condition == "service_healthy":
                wait_healthy(needed, interpolate(services[dep]["image"], env))
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


def ps(project: str) -> None:
    """The project's containers, each running one's health check run first (nothing else runs it
    here), so the STATUS column says healthy or unhealthy as of now."""
    label = f"label=io.ivr.compose.project={project}"
    names = subprocess.run(
        ["podman", "ps", "-q", "--filter", label], text=True, capture_output=True, check=True
    ).stdout.split()
    for container in names:
        out = subprocess.run(
            ["podman", "inspect", "--format", "{{json .Config.Healthcheck}}", container],
            text=True,
            capture_output=True,
            check=False,
        )
        if out.returncode == 0 and json.loads(out.stdout or "null"):
            run_health_check(container)
    podman("ps", "-a", "--filter", label)


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
        ps(project)
    elif command == "logs" and rest:
        podman("logs", f"{project}_{rest[0]}_1")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
