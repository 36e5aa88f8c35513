"""Composition root: builds every service from the config, passes dependencies in, owns start/stop.

Every background task is created here or by a service this object owns, and ``stop()`` cancels
and awaits all of them, in the reverse order of ``start()``: first stop taking calls, then stop
the speech server (AudioSocket) and its recognition threads, then stop watching flows, then stop
the HTTP API, then flush the journey store (which owns the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from ivr.agi.protocol import AgiEnvironment
from ivr.agi.server import AgiServer, Handler
from ivr.channels.voice import InboundCalls
from ivr.config import Config
from ivr.errors import ChannelError, ConfigError
from ivr.flow.library import FlowLibrary
from ivr.flow.model import Flow
from ivr.flow.personalize import DAY
from ivr.speech.service import SpeechService, speech_from_config
from ivr.store.customers import CallerProfiles, CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.web.app import WebServer, create_app
from ivr.web.auth import bearer_token

log = logging.getLogger(__name__)


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.flows = FlowLibrary(Path(config["flows.dir"]))
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = JourneyStore(
            make_engine(config.database_url), half_life_days=float(config["personalize.half_life_days"])
        )
        self.customers = CustomerStore(self.store.engine, country_code=config["phone.country_code"])
        self.inbound = InboundCalls(
            self.flows,
            self.pick_flow,
            self.store,
            prefix=config["prompts.prefix"],
            profiles=CallerProfiles(self.customers, timeout=config["customers.lookup_timeout"]),
            half_life=float(config["personalize.half_life_days"]) * DAY,
        )
        self.web = WebServer(
            create_app(self.customers, bearer_token(config["api.token"])),
            host=config["web.host"],
            port=config["web.port"],
        )
        self.routes: dict[str, Handler] = {"inbound": self.inbound}
        self.agi = AgiServer(
            self.route,
            host=config["agi.host"],
            port=config["agi.port"],
            header_timeout=config["agi.header_timeout"],
            command_timeout=config["agi.command_timeout"],
        )
        self._watcher: asyncio.Task[None] | None = None
        #: Loaded in start() (it reads a model): None means menus take keys only.
        self.speech: SpeechService | None = None

    def route(self, env: AgiEnvironment) -> Handler | None:
        """An AGI route's name is the path in the dialplan's AGI() URL: agi://host:port/<route>."""
        return self.routes.get(env.route)

    def pick_flow(self, requested: str | None, dialled: str) -> Flow:
        try:
            if requested:
                return self.flows.get(requested)
            return self.flows.for_number(dialled) or self.flows.get(self.config["flows.default"])
        except KeyError:
            raise ChannelError(f"no flow {requested or self.config['flows.default']!r} is loaded") from None

    def reload_flows(self) -> None:
        report = self.flows.reload()
        for name in report.loaded:
            log.info("flow ready: %s", name)

    async def start(self) -> None:
        report = self.flows.reload()
        if not self.flows.names():
            raise ConfigError(f"no usable flow in {self.flows.directory}: " + "; ".join(map(str, report.problems)))
        if self.config["flows.default"] not in self.flows.names():
            log.warning(
                "default flow %r is not loaded; calls without a flow go to the fallback", self.config["flows.default"]
            )
        await self.store.start()  # brings the database schema to head first
        await self.web.start()
        if not self.config["api.token"]:
            log.warning("HTTP API disabled (it answers 503) until IVR_API_TOKEN is set")
        await self._start_speech()  # before the first call can arrive
        await self.agi.start()
        self._watcher = asyncio.create_task(self._watch_flows(), name="flow-watcher")
        log.info(
            "FastAGI listening on %s:%d with flows %s",
            self.config["agi.host"],
            self.agi.port,
            ", ".join(self.flows.names()),
        )

    async def _start_speech(self) -> None:
        """A model asked for but missing is a ConfigError (start-up fails, clearly); a port that
        cannot be bound only costs speech: calls go on with keys, said once at ERROR."""
        speech = await speech_from_config(self.config)
        if speech is None:
            return
        try:
            await speech.start()
        except OSError as exc:
            log.error("speech off: cannot listen for AudioSocket on %s: %s", speech.server.address, exc)
            await speech.stop()
            return
        self.speech = speech
        self.inbound.speech = speech

    async def stop(self) -> None:
        await self.agi.stop()
        if self.speech is not None:
            self.inbound.speech = None
            await self.speech.stop()
            self.speech = None
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self.web.stop()
        await self.store.stop()
        log.info("stopped after %d calls: %s", self.inbound.calls, self.inbound.finished)

    async def _watch_flows(self) -> None:
        interval = float(self.config["flows.watch_interval"])
        while True:
            await asyncio.sleep(interval)
            try:
                if self.flows.changed():
                    self.reload_flows()
            except Exception:  # a watcher that dies silently would freeze flows forever
                log.exception("flow reload failed")


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads flows."""
    app = App(config)
    await app.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.reload_flows)
    if ready:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await app.stop()
