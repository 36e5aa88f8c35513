"""Operators' endpoints: ``/healthz``, ``/readyz`` and ``/metrics``, on the web listener.

* ``GET /healthz``: 200 ``{"ok": true}`` while the process and its event loop answer. Open (no
  token): it says nothing but "up", and a load balancer or systemd watchdog must not need a secret.
* ``GET /readyz``: 200 when every check passes, else 503; the body names each check and its state
  (``{"ready": false, "checks": {"agi": "ok", "database": "unreachable", "ami": "ok"}}``, and
  whatever the root adds: this node's ACD ``role``), never an error text (open, like ``/healthz``; the reason is logged once when a check changes state).
  The checks are whatever the composition root registers (``ivr.app``: the AGI port accepting, the
  database answering ``SELECT 1``, AMI connected when it is configured). Cheap enough to poll every
  second: one run of the checks serves every request for ``max_age`` seconds, concurrent requests
  wait for the same run, and a check that hangs counts as failed after ``check_timeout``.
* ``GET /metrics``: the Prometheus text format (``ivr.telemetry``), behind its own bearer token
  (``web.metrics_token``), not the API's: the scraper should hold a key that reads counters, not
  customers' timelines. With no token set it answers 503, as the API does.

Every response of the application, whatever route made it, is counted by status code here
(``on_response_prepare``: it also sees error responses and the handshake of websockets).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from ivr.telemetry import CONTENT_TYPE, Telemetry
from ivr.web.auth import Authorize

log = logging.getLogger(__name__)

#: True when the dependency is usable; False or an exception when it is not.
Check = Callable[[], Awaitable[bool]]


class Readiness:
    """Runs the named checks, at most once per ``max_age`` seconds, each bounded by ``check_timeout``."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        max_age: float = 0.5,
        check_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = dict(checks)
        self.max_age = max_age
        self.check_timeout = check_timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._states: dict[str, str] = {}
        self._at = -float("inf")

    async def states(self) -> dict[str, str]:
        """Each check's state, ``"ok"`` or why not (a short word, safe to show anyone)."""
        async with self._lock:  # concurrent pollers share one run
            if self._clock() - self._at >= self.max_age:
                names = list(self.checks)
                found = await asyncio.gather(*(self._run(name) for name in names))
                states = dict(zip(names, found, strict=True))
                self._log_changes(states)
                self._states, self._at = states, self._clock()
            return dict(self._states)

    async def _run(self, name: str) -> str:
        try:
            async with asyncio.timeout(self.check_timeout):
                ok = await self.checks[name]()
        except TimeoutError:
            return "timeout"
        except Exception as exc:
            log.debug("readiness check %s failed: %s", name, exc)
            return "unreachable"
        return "ok" if ok else "down"

    def _log_changes(self, states: dict[str, str]) -> None:
        for name, state in states.items():
            before = self._states.get(name)
            if before is not None and before != state:
                level = logging.INFO if state == "ok" else logging.WARNING
                log.log(level, "readiness: %s %s -> %s", name, before, state)


TELEMETRY = web.AppKey("telemetry", Telemetry)
READINESS = web.AppKey("readiness", Readiness)
METRICS_AUTHORIZE: web.AppKey[Authorize] = web.AppKey("metrics_authorize")
READY_INFO: web.AppKey[Callable[[], dict[str, str]]] = web.AppKey("ready_info")

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    states = await request.app[READINESS].states()
    ready = all(state == "ok" for state in states.values())
    body = {"ready": ready, "checks": states, **request.app[READY_INFO]()}
    return web.json_response(body, status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    await request.app[METRICS_AUTHORIZE](request)
    body = request.app[TELEMETRY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _count_response(request: web.Request, response: web.StreamResponse) -> None:
    request.app[TELEMETRY].http_response(response.status)


def setup_health(
    app: web.Application,
    *,
    telemetry: Telemetry,
    readiness: Readiness,
    authorize: Authorize,
    info: Callable[[], dict[str, str]] = dict,
) -> None:
    """Register the operators' endpoints on ``app`` (called by the composition root). ``info``:
    what ``/readyz`` says besides its checks (this node's ACD role), read at each request."""
    app[TELEMETRY] = telemetry
    app[READY_INFO] = info
    app[READINESS] = readiness
    app[METRICS_AUTHORIZE] = authorize
    app.on_response_prepare.append(_count_response)
    app.add_routes(routes)
