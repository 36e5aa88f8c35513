"""Publishing a flow file from the studio: which names are allowed, what a check of an edited text
reports, the diff between two versions, and the atomic write.

Why a name is a pattern and not a path: the studio writes ``<name>.yaml`` in the flows directory
and nowhere else. A name is lower-case letters, digits, ``_`` and ``-``, starting with a letter
(the shipped flows' names), so ``..``, ``/``, ``\\``, a NUL or a leading dot cannot be expressed;
the resolved path is checked to sit directly in the directory all the same.

Why the check reads the other files: ``ivr check`` reports what no single file shows (a number
claimed by two flows, flows invoking each other in a circle, a flow used that does not exist), so
the edited text is checked together with the other flows as they are on disk, with the same
``file:line: step: message`` problems.

Why temp file + rename: the controller's watcher may read the file at any moment; ``os.replace``
in the same directory swaps the whole file at once, so it reads the old text or the new, never
half of one. The temporary name starts with a dot and does not end in ``.yaml``, so no flow scan
picks it up.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import tempfile
from pathlib import Path

from ivr.errors import FlowError
from ivr.flow.loader import FlowLoadError, cross_check, flow_files, load_flow_file, parse_flow
from ivr.flow.model import Flow, FlowProblem
from ivr.flow.steps.queue import QueueStep

NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class BadFlowName(FlowError):
    """A flow name the studio will not turn into a file name."""


def flow_path(directory: Path, name: str) -> Path:
    """``directory/<name>.yaml``, or BadFlowName for a name that is not a plain flow name."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise BadFlowName("a flow name is a-z, 0-9, _ and - (up to 64), starting with a letter")
    root = directory.resolve()
    path = (root / f"{name}.yaml").resolve()
    if path.parent != root:
        raise BadFlowName("a flow lives directly in the flows directory")
    return path


def check_text(
    directory: Path, name: str, text: str, queues: tuple[str, frozenset[str]] | None = None
) -> tuple[Flow | None, list[FlowProblem]]:
    """What ``ivr check`` would say of the flows directory with ``<name>.yaml`` holding ``text``:
    the flow if the text parses (to draw it, even when it clashes with another file), and the
    problems it brings: its own, and those it causes in another file (a number that file claims
    too); the other files' problems of their own are theirs. Publish only without problems.
    ``queues``: (queues.conf's path, the queues it defines), to report a queue step's queue that
    Asterisk lacks, as ``ivr check`` does; None when there is no file to check against."""
    file = f"{name}.yaml"
    try:
        flow = parse_flow(text, file, default_name=name)
    except FlowLoadError as exc:
        return None, exc.problems
    problems: list[FlowProblem] = []
    if flow.name != name:
        problems.append(FlowProblem(file, 1, "", f"this file holds flow {name!r}: 'flow' must say {name}"))
    others: list[Flow] = []
    known: set[str] = set()
    mine = directory.resolve() / file
    for path in flow_files(directory) if directory.is_dir() else []:
        if path.resolve() == mine:
            continue
        try:
            others.append(load_flow_file(path))
        except FlowLoadError:
            known.add(path.stem)
    if queues is not None:
        conf, defined = queues
        problems += [
            FlowProblem(file, use.line, use.name, f"{conf}: no queue [{use.queue}]")
            for use in flow.steps.values()
            if isinstance(use, QueueStep) and use.queue not in defined
        ]
    before = {str(p) for p in cross_check(others, known | {name})}
    problems += [p for p in cross_check([*others, flow], known) if p.file == file or str(p) not in before]
    return flow, sorted(problems, key=lambda p: p.line)


def diff(old: str, new: str, name: str) -> str:
    """A unified diff of one version of ``name`` to the next ("" when the texts are the same)."""
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"{name}.yaml (before)", f"{name}.yaml"
        )
    )


def conflict(base: str, current: str | None) -> bool:
    """A publish edited from version ``base`` over the file's ``current`` version (None: there is
    no file) would overwrite a change its author never saw."""
    return base != (current or "")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (see the module docstring)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
