"""``GET /api/kpis``: the contact-center KPIs over HTTP, the numbers ``ivr report`` prints.

``?from=2026-12-03&to=2026-12-04&by=interval|flow|queue|skill|agent|channel|holdout|step
&interval=15min|hour|day&holdout=1&flow=support`` (``holdout=1`` splits every group into the callers
who heard personalized menus and the holdout; ``flow`` keeps only the contacts that started in that
flow, and with ``by=step`` says where its callers left). The bearer token of every ``/api/`` route applies (the app's
middleware). Answer::

    {"from": "...", "to": "...", "by": "queue", "interval": "hour", "service_level_s": 20.0,
     "rows": [{"queue": "billing", "contacts": 12, "offered": 10, "handled": 9, ...}, ...]}

A bad parameter or a window longer than ``kpi.max_days`` is a 400 saying what is wrong, checked
before any query runs. A database that cannot be read (down, unreachable, its file gone) is a 503
saying so, and the error goes to the log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from ivr.errors import StoreError
from ivr.kpis import ReportRequest
from ivr.store.kpis import KpiStore
from ivr.web.errors import json_error


@dataclass(frozen=True)
class KpiSettings:
    store: KpiStore
    service_level_s: float
    max_window_s: float


log = logging.getLogger(__name__)
KPIS = web.AppKey("kpis", KpiSettings)
FLAGS = {"1": True, "true": True, "0": False, "false": False}
routes = web.RouteTableDef()


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(query: dict[str, str], max_window_s: float) -> ReportRequest:
    """The request's parameters, or a 400 naming the bad one."""
    unknown = sorted(set(query) - {"from", "to", "by", "interval", "holdout", "flow"})
    if unknown:
        raise json_error(web.HTTPBadRequest, f"unknown parameter {unknown[0][:40]!r}")
    if "from" not in query or "to" not in query:
        raise json_error(web.HTTPBadRequest, "'from' and 'to' are required (ISO 8601)")
    split = FLAGS.get(query.get("holdout", "0").lower())
    if split is None:
        raise json_error(web.HTTPBadRequest, "'holdout' must be 1 or 0")
    try:
        return ReportRequest.parse(
            query["from"],
            query["to"],
            by=query.get("by", "interval"),
            interval=query.get("interval", "hour"),
            split_holdout=split,
            max_window_s=max_window_s,
            flow=query.get("flow"),
        )
    except ValueError as exc:
        raise json_error(web.HTTPBadRequest, str(exc)) from None


@routes.get("/api/kpis")
async def kpis(request: web.Request) -> web.Response:
    settings = request.app[KPIS]
    wanted = parse(dict(request.query), settings.max_window_s)
    try:
        rows = await settings.store.report(wanted, service_level_s=settings.service_level_s)
    except StoreError as exc:
        log.warning("GET /api/kpis: the database cannot be read: %s", exc)
        raise json_error(
            web.HTTPServiceUnavailable, "the KPIs cannot be read now: the database is not answering"
        ) from None
    return web.json_response(
        {
            "from": iso(wanted.start),
            "to": iso(wanted.end),
            "by": wanted.by,
            "interval": wanted.interval,
            "service_level_s": settings.service_level_s,
            "rows": [row.to_dict() for row in rows],
        }
    )


def setup_kpis(app: web.Application, store: KpiStore, *, service_level_s: float, max_window_s: float) -> None:
    app[KPIS] = KpiSettings(store, service_level_s, max_window_s)
    app.add_routes(routes)
