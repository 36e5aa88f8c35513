"""The set of loaded flows, with every version a running journey may still need.

Why versions are kept: an admin saves a new menu while two hundred callers are in the old one.
Journeys carry the version they started on and finish on it; new journeys get the new version.
A broken edit never replaces a good version: the last good one keeps serving and the problems are
logged (and shown by ``ivr check``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ivr.flow.loader import FlowLoadError, flow_files, load_flow_file, number_conflicts
from ivr.flow.model import Flow, FlowProblem
from ivr.flow.steps.queue import QueueStep
from ivr.routing.queues_conf import QueueUse

log = logging.getLogger(__name__)
KEEP_VERSIONS = 20


@dataclass
class ReloadReport:
    loaded: list[str] = field(default_factory=list)  # "name@version"
    kept: list[str] = field(default_factory=list)  # flows whose new file is broken: old version kept
    removed: list[str] = field(default_factory=list)
    problems: list[FlowProblem] = field(default_factory=list)


class FlowLibrary:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._versions: dict[str, dict[str, Flow]] = {}
        self._current: dict[str, str] = {}
        self._by_file: dict[Path, str] = {}
        self._stamps: dict[Path, tuple[int, int]] = {}

    def get(self, name: str, version: str | None = None) -> Flow:
        """KeyError when the flow (or that version of it) is not loaded."""
        return self._versions[name][version or self._current[name]]

    def current(self, name: str) -> Flow:
        return self.get(name)

    def names(self) -> list[str]:
        return sorted(self._current)

    def for_number(self, dialled: str) -> Flow | None:
        for name in self._current:
            flow = self.get(name)
            if dialled in flow.numbers:
                return flow
        return None

    def _scan(self) -> dict[Path, tuple[int, int]]:
        stamps = {}
        for path in flow_files(self.directory) if self.directory.exists() else []:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            stamps[path] = (st.st_mtime_ns, st.st_size)
        return stamps

    def changed(self) -> bool:
        return self._scan() != self._stamps

    def reload(self) -> ReloadReport:
        """Load new and edited files, keep the last good version of broken ones."""
        report = ReloadReport()
        stamps = self._scan()
        for path, stamp in stamps.items():
            if self._stamps.get(path) == stamp:
                continue
            try:
                flow = load_flow_file(path)
            except FlowLoadError as exc:
                report.problems.extend(exc.problems)
                if path in self._by_file:
                    report.kept.append(self._by_file[path])
                    log.error(
                        "flow file %s is broken; keeping %s@%s:\n%s",
                        path,
                        self._by_file[path],
                        self._current.get(self._by_file[path]),
                        exc,
                    )
                else:
                    log.error("flow file %s is broken and was not loaded:\n%s", path, exc)
                continue
            except OSError as exc:
                log.error("cannot read flow file %s: %s", path, exc)
                continue
            owner = self._by_file.get(path)
            other = next((p for p, n in self._by_file.items() if n == flow.name and p != path), None)
            if other is not None:
                problem = FlowProblem(str(path), 1, "", f"flow {flow.name!r} is already defined in {other}")
                report.problems.append(problem)
                log.error("%s", problem)
                continue
            if owner and owner != flow.name:
                self._forget(owner, report)
            versions = self._versions.setdefault(flow.name, {})
            versions[flow.version] = flow
            while len(versions) > KEEP_VERSIONS:
                oldest = next(v for v in versions if v != flow.version)
                del versions[oldest]
            if self._current.get(flow.name) != flow.version:
                report.loaded.append(f"{flow.name}@{flow.version}")
                log.info("loaded flow %s@%s from %s", flow.name, flow.version, path)
            self._current[flow.name] = flow.version
            self._by_file[path] = flow.name
        for path in list(self._by_file):
            if path not in stamps:
                self._forget(self._by_file.pop(path), report)
        self._stamps = stamps
        for problem in number_conflicts(self.get(name) for name in sorted(self._current)):
            report.problems.append(problem)
            log.error("%s (calls to it reach the flow loaded first until one file gives it up)", problem)
        return report

    def _forget(self, name: str, report: ReloadReport) -> None:
        """A deleted flow takes no new journeys; running ones keep their version in memory."""
        if name in self._current:
            del self._current[name]
            report.removed.append(name)
            log.warning("flow %s was removed; running journeys finish on their version", name)


def queues_named(flows: Iterable[Flow]) -> list[QueueUse]:
    """Every queue step of these flows, with where it is written, for checking against queues.conf."""
    return [
        QueueUse(f"{flow.source}:{step.line}" if flow.source else flow.name, step.name, step.queue)
        for flow in flows
        for step in flow.steps.values()
        if isinstance(step, QueueStep)
    ]
