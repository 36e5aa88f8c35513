"""Composition root: builds every service from the config, passes dependencies in, owns start/stop.

Every background task is created here or by a service this object owns, and ``stop()`` cancels
and awaits all of them, in the reverse order of ``start()``: first stop taking calls, then stop
the speech server (AudioSocket) and its recognition threads, then stop watching flows, then stop
the HTTP API, then flush the journey store (which owns the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from pathlib import Path

from ivr.acd.callbacks import Callbacks
from ivr.acd.service import Acd
from ivr.agi import variables as var
from ivr.agi.protocol import AgiEnvironment
from ivr.agi.server import AgiServer, Handler
from ivr.ami.actions import originate
from ivr.ami.client import AmiClient, AmiError
from ivr.bus.pubsub import bus_from_url
from ivr.channels.chat import TextFlows
from ivr.channels.handoff import Handoffs, TokenCodec
from ivr.channels.sms import KannelProvider, SmsChannel, SmsProvider
from ivr.channels.voice import InboundCalls
from ivr.config import Config
from ivr.errors import ChannelError, ConfigError
from ivr.flow.hours import BusinessHours
from ivr.flow.library import FlowLibrary
from ivr.flow.model import Flow, Interaction, Journey, Queue
from ivr.flow.personalize import DAY
from ivr.flow.profile import CallerProfile
from ivr.speech.service import SpeechService, speech_from_config
from ivr.store.agents import AgentStore, CallbackStore
from ivr.store.continuations import ContinuationStore
from ivr.store.customers import CallerProfiles, CustomerStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.web.app import WebServer, create_app
from ivr.web.auth import bearer_token
from ivr.web.chat import ChatSettings, setup_chat, setup_sms
from ivr.web.desktop import setup_desktop

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
        self._setup_text_channels()
        self._setup_acd()
        self.routes: dict[str, Handler] = {"inbound": self.inbound}
        self.routes["continue"] = self.inbound.continue_call  # "call me now"
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

    def _setup_text_channels(self) -> None:
        """Continuation links, the web chat and the SMS channel, on the same journeys."""
        config = self.config
        half_life = float(config["personalize.half_life_days"]) * DAY
        secret = str(config["handoff.secret"])
        self.codec = TokenCodec(secret) if secret else None
        self.continuations = ContinuationStore(self.store.engine)
        self.chat = TextFlows("chat", self.flows, self.store, profile=self._profile_of, half_life=half_life)
        self.sms_provider: SmsProvider | None = None
        self.sms: SmsChannel | None = None
        if config["sms.provider"] == "kannel":
            self.sms_provider = KannelProvider(
                config["sms.kannel_url"],
                config["sms.kannel_username"],
                config.require_secret("sms.kannel_password"),
                sender=config["sms.sender"],
            )
            sms_flows = TextFlows("sms", self.flows, self.store, profile=self._profile_of, half_life=half_life)
            self.sms = SmsChannel(
                self.sms_provider,
                sms_flows,
                self.store,
                pick_flow=lambda: self.pick_flow(config["sms.flow"] or None, ""),
                profiles=CallerProfiles(self.customers, timeout=config["customers.lookup_timeout"]),
                open_journeys=self.continuations,
                country_code=config["phone.country_code"],
            )
        elif config["sms.provider"] != "off":
            raise ConfigError(f"sms.provider must be kannel or off, not {config['sms.provider']!r}")
        self.handoffs = Handoffs(
            self.codec, self.continuations, self.sms, base_url=config["handoff.base_url"], ttl=config["handoff.ttl"]
        )
        self.chat.handoff = self.handoffs.send
        if self.sms is not None:
            self.sms.text.handoff = self.handoffs.send
            setup_sms(self.web.app, self.sms, config["sms.inbound_token"])
        self.inbound.handoff = self.handoffs.send
        if self.codec is not None or self.sms is not None:  # a journey can be open on another channel
            ttl = float(config["handoff.ttl"])
            self.inbound.open_journeys = lambda customer: self.continuations.open_journey_of_customer(
                customer, time.time() - ttl
            )
        base = str(config["handoff.base_url"])
        self.chat_settings = ChatSettings(
            self.codec,
            self.continuations,
            self.chat,
            config["handoff.ttl"],
            secure_cookie=base.startswith("https:"),
        )
        setup_chat(self.web.app, self.chat_settings)

    def _setup_acd(self) -> None:
        """AMI (only with ami.secret set), the ACD, the pub/sub bus and the agent desktop."""
        config = self.config
        self.bus = bus_from_url(config["pubsub.url"])
        self.ami: AmiClient | None = None
        if config["ami.secret"]:
            self.ami = AmiClient(
                host=config["ami.host"],
                port=config["ami.port"],
                username=config["ami.username"],
                secret=config["ami.secret"],
                events=True,
            )
        self.agents = AgentStore(self.store.engine)
        self.acd = Acd(ami=self.ami, journeys=self.store, customers=self.customers, bus=self.bus)
        self.callbacks = Callbacks(
            self.acd,
            CallbackStore(self.store.engine),
            dial=config["callbacks.dial"],
            offer_after=float(config["callbacks.offer_after"]),
            handle_time=float(config["queue.handle_time"]),
            hours=self._queue_hours,
        )
        self.acd.callbacks = self.callbacks
        if self.ami is not None:  # estimates need live queue state
            self.inbound.queue_desk = self.callbacks
        setup_desktop(
            self.web.app,
            acd=self.acd,
            agents=self.agents,
            bus=self.bus,
            secure_cookies=bool(config["desktop.secure_cookies"]),
        )

    def _queue_hours(self, journey: Journey, queue: Queue) -> BusinessHours | None:
        """The journey's flow calendar named like the queue's skill or the queue, else its only one."""
        try:
            hours = self.flows.get(journey.flow, journey.version).hours
        except KeyError:
            return None
        found = hours.get(queue.skill or "") or hours.get(queue.queue)
        return found or (next(iter(hours.values())) if len(hours) == 1 else None)

    async def _start_acd(self) -> None:
        await self.bus.start()
        if self.ami is None:
            log.warning("AMI off (set IVR_AMI_SECRET): the agent desktop works but no queue events arrive")
            return
        await self.ami.start(wait=5.0)
        await self.callbacks.start()
        if not self.ami.connected.is_set():
            log.warning("AMI not reachable yet at %s:%d; retrying in the background", self.ami.host, self.ami.port)

    async def _stop_acd(self) -> None:
        await self.callbacks.stop()
        if self.ami is not None:
            await self.ami.stop()
        await self.acd.stop()
        await self.bus.stop()

    async def _profile_of(self, journey: Journey) -> CallerProfile | None:
        """What a text channel knows about the customer of a journey (prefill, ranking); never fatal."""
        if not journey.customer_id:
            return None
        try:
            return await asyncio.wait_for(
                self.customers.load_profile(customer_id=journey.customer_id), self.config["customers.lookup_timeout"]
            )
        except Exception as exc:
            log.error("profile of customer %s not loaded: %s", journey.customer_id, exc)
            return None

    async def call_me(self, journey_id: str) -> bool:
        """ "Call me now" from the chat: AMI Originate to the customer's number, into the
        ``ivr-continue`` context, which runs the journey on voice at its current step."""
        journey = await self.store.get(journey_id)
        if self.ami is None or journey is None or not journey.caller or journey.status != "active":
            return False
        action = originate(
            self.config["callbacks.dial"].format(number=journey.caller),
            context="ivr-continue",
            exten="s",
            caller_id=str(self.config["sms.sender"] or "ivr"),
            variables={var.JOURNEY_ID: journey.id},
        )
        try:
            await self.ami.action(action)
        except AmiError as exc:
            log.error("call-me for journey %s not placed: %s", journey.id, exc)
            return False
        self.store.save(journey, [Interaction("call_requested", journey.step, {"from": journey.channel}, time.time())])
        log.info("calling the customer of journey %s (at %s)", journey.id, journey.step)
        return True

    async def _start_text_channels(self) -> None:
        self.chat_settings.call_me = self.call_me if self.ami is not None else None
        self.chat_settings.agents, self.chat_settings.bus = self.acd.chats, self.bus  # blended agents
        if not self.handoffs.base_url:
            self.handoffs.base_url = f"http://{self.config['web.host']}:{self.web.port}"
        if self.codec is None:
            log.warning("continuation links are off until IVR_HANDOFF_SECRET (handoff.secret) is set")
        if self.sms_provider is not None:
            if isinstance(self.sms_provider, KannelProvider) and self.config["sms.inbound_token"]:
                self.sms_provider.dlr_url = (
                    f"{self.handoffs.base_url}/sms/kannel/dlr?key={self.config['sms.inbound_token']}"
                    "&ref={ref}&status=%d"
                )
            await self.sms_provider.start()
            log.info("SMS channel on %s", self.sms_provider.name)

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
        await self._start_text_channels()
        await self._start_acd()
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
        await self._stop_acd()
        if self.sms_provider is not None:
            await self.sms_provider.stop()
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
    # Everything loaded so far (flows, models, libraries: about 100,000 objects with a recognizer)
    # lives as long as the process. Freezing it takes it out of the cyclic collector's scans, so
    # a full collection during calls walks only what calls allocate (66 ms -> well under 1 ms).
    gc.freeze()
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
