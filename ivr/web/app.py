"""The HTTP application factory and its server, owned by ``ivr.app.App`` (start/stop).

Every ``/api/`` request passes the ``Authorize`` function first (``auth.py``); nothing else in the
application checks credentials, so replacing the scheme is replacing that one argument.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ivr.store.customers import CustomerStore
from ivr.web import api
from ivr.web.auth import Authorize

log = logging.getLogger(__name__)
AUTHORIZE: web.AppKey[Authorize] = web.AppKey("authorize")


@web.middleware
async def require_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/api/"):
        await request.app[AUTHORIZE](request)
    return await handler(request)


def create_app(customers: CustomerStore, authorize: Authorize) -> web.Application:
    app = web.Application(middlewares=[require_auth])
    app[AUTHORIZE] = authorize
    app[api.CUSTOMERS] = customers
    app.add_routes(api.routes)
    return app


class WebServer:
    """One aiohttp application on one TCP address; ``port=0`` picks a free port (see ``.port``)."""

    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])
        log.info("HTTP API listening on http://%s:%d/api/", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
