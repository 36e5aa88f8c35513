"""``/api``: the customer timeline, unified across channels (what screen pops and chat read).

``GET /api/customers/{id}/timeline`` and ``GET /api/customers/by-phone/{e164}/timeline``, newest
first, ``?limit=50&before=<cursor>``. The answer::

    {"customer": {...}, "entries": [{"at", "channel", "kind", "journey_id", "step", "data"}, ...],
     "next": "<cursor for the next, older page>" | null}
"""

from __future__ import annotations

import math

from aiohttp import web

from ivr.errors import StoreError
from ivr.store.customers import Cursor, CustomerStore
from ivr.web.errors import json_error

CUSTOMERS = web.AppKey("customers", CustomerStore)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: A cursor we hand out is ~30 characters; anything much longer was not made by us.
MAX_CURSOR = 100
_MAX_ROW_ID = 2**63 - 1  # SQL BIGINT: a larger id fails in the driver, not as a bad cursor

routes = web.RouteTableDef()


def _page_args(request: web.Request) -> tuple[int, Cursor | None]:
    raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
    try:
        limit = int(raw_limit)
    except ValueError:
        raise json_error(web.HTTPBadRequest, f"limit must be a number, got {raw_limit!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise json_error(web.HTTPBadRequest, f"limit must be between 1 and {MAX_LIMIT}")
    before = request.query.get("before")
    return limit, _cursor(before) if before else None


def _cursor(token: str) -> Cursor:
    """A cursor of ours, or 400: bounded length (deep nesting), a finite time, a row id SQL can hold."""
    bad = json_error(web.HTTPBadRequest, "bad cursor: pass back the 'next' value of a previous page")
    if len(token) > MAX_CURSOR:
        raise bad
    try:
        cursor = Cursor.decode(token)
    except (ValueError, RecursionError):
        raise bad from None
    if not math.isfinite(cursor.at) or not 0 <= cursor.id <= _MAX_ROW_ID:
        raise bad
    return cursor


async def _timeline(request: web.Request, customer_id: str) -> web.Response:
    limit, before = _page_args(request)
    customers = request.app[CUSTOMERS]
    customer = await customers.get(customer_id)
    if customer is None:
        raise json_error(web.HTTPNotFound, f"no customer {customer_id}")
    page = await customers.timeline(customer_id, limit=limit, before=before)
    return web.json_response(
        {"customer": customer, "entries": page.entries, "next": page.next.encode() if page.next else None}
    )


@routes.get("/api/customers/{id}/timeline")
async def customer_timeline(request: web.Request) -> web.Response:
    return await _timeline(request, request.match_info["id"])


@routes.get("/api/customers/by-phone/{phone}/timeline")
async def phone_timeline(request: web.Request) -> web.Response:
    customers = request.app[CUSTOMERS]
    try:
        customer_id = await customers.find("phone", request.match_info["phone"])
    except StoreError as exc:
        raise json_error(web.HTTPBadRequest, str(exc)) from None
    if customer_id is None:
        raise json_error(web.HTTPNotFound, f"no customer with phone {request.match_info['phone']}")
    return await _timeline(request, customer_id)
