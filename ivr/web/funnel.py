"""``GET /api/funnel``: the live funnel of one flow, the numbers ``ivr funnel`` prints.

``?flow=support&window=24h`` (or ``7d``, or ``from=...&to=...`` in ISO 8601). The bearer token of
every ``/api/`` route applies (the app's middleware). The studio paints each step's counts on the
node of the diagram that carries ``data-step="<step id>"``: the answer's ``steps`` are keyed by
the same ids (docs/kpis.md, "The funnel of a flow")::

    {"flow": "support", "window": "24h", "from": "...", "to": "...", "journeys": 12,
     "steps": {"main_menu": {"entered": 12, "options": {"pay_bill": {"key": 5, "speech": 2,
               "text": 1, "share": 0.8}, ...}, "no_input": 1, "no_match": 2, "left": 1,
               "handed_off": 0, "transferred": 3, ...}, ...}}

A bad parameter or a window over 31 days is a 400 saying what is wrong, before any query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from ivr.flow.funnel import FunnelWindow
from ivr.store.funnels import FunnelStore
from ivr.web.errors import json_error


@dataclass(frozen=True)
class FunnelSettings:
    store: FunnelStore
    max_window_s: float


FUNNEL = web.AppKey("funnel", FunnelSettings)
PARAMETERS = {"flow", "window", "from", "to"}
routes = web.RouteTableDef()


def parse(query: dict[str, str], max_window_s: float, now: float) -> tuple[str, FunnelWindow]:
    """The flow and the window asked for, or a 400 naming the bad parameter."""
    unknown = sorted(set(query) - PARAMETERS)
    if unknown:
        raise json_error(web.HTTPBadRequest, f"unknown parameter {unknown[0][:40]!r}")
    flow = query.get("flow", "")
    if not 0 < len(flow) <= 64:
        raise json_error(web.HTTPBadRequest, "'flow' must be a flow's name (1 to 64 characters)")
    try:
        window = FunnelWindow.parse(
            now=now, window=query.get("window"), start=query.get("from"), end=query.get("to"), max_window_s=max_window_s
        )
    except ValueError as exc:
        raise json_error(web.HTTPBadRequest, str(exc)) from None
    return flow, window


@routes.get("/api/funnel")
async def funnel(request: web.Request) -> web.Response:
    settings = request.app[FUNNEL]
    flow, window = parse(dict(request.query), settings.max_window_s, time.time())
    found = await settings.store.funnel(flow, window)
    return web.json_response(found.to_dict(window))


def setup_funnel(app: web.Application, store: FunnelStore, *, max_window_s: float) -> None:
    app[FUNNEL] = FunnelSettings(store, max_window_s)
    app.add_routes(routes)
