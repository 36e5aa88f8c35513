"""Composition root: builds every service from the config, passes dependencies in, owns start/stop.

Every background task is created here or by a service this object owns, and ``stop()`` cancels
and awaits all of them, in the reverse order of ``start()``: first stop taking calls, then stop
the speech server (AudioSocket) and its recognition threads, then stop watching flows, then stop
the HTTP API, then flush the journey store (which owns the pool).

Wiring happens in one place, ``App.__init__``: objects are built in dependency order (stores, the
ACD and its callbacks, the SMS outbox, continuation links, the text and voice channels, the HTTP
routes, the AGI server) and each receives what it needs in its constructor. What only exists after
start-up is passed as a provider read when needed: the speech service (:class:`SpeechSlot`), the
public address of the chat pages when the HTTP port is chosen at start (:meth:`App.public_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

from ivr.acd.callbacks import Callbacks
from ivr.acd.desk import AcdDesk, ChatsViaLeader
from ivr.acd.kpitoday import TodayKpis
from ivr.acd.leader import Leadership
from ivr.acd.outbound import Outbound
from ivr.acd.queueview import QueueViews
from ivr.acd.service import Acd
from ivr.acd.sipcreds import SoftphoneKeys
from ivr.acd.wallboard import WallboardPublisher, snapshot
from ivr.agi import variables as var
from ivr.agi.protocol import AgiEnvironment
from ivr.agi.server import AgiServer, Handler
from ivr.aio import cancel_and_wait, wait_for
from ivr.ami.actions import originate
from ivr.ami.client import AmiClient, AmiError
from ivr.bus.pubsub import RedisBus, bus_from_url
from ivr.channels.chat import TextFlows
from ivr.channels.handoff import Handoffs, TokenCodec
from ivr.channels.sms import KannelProvider, SmsChannel, SmsOutbox, SmsProvider
from ivr.channels.voice import InboundCalls
from ivr.channels.wording import zone
from ivr.config import Config, SmsSettings
from ivr.errors import ChannelError, ConfigError
from ivr.flow.funnel import MAX_WINDOW_S as MAX_FUNNEL_S
from ivr.flow.hours import BusinessHours, calendar_for
from ivr.flow.library import FlowLibrary, queues_named
from ivr.flow.model import Flow, Interaction, Journey, Queue
from ivr.flow.personalize import DAY
from ivr.flow.profile import CallerProfile
from ivr.flow.simulate import Transcript, simulate
from ivr.routing.queues_conf import QueueCheck, check_queues, defined_queues
from ivr.routing.rules import RoutingRules
from ivr.shutdown import exit_leaving, log_tasks, settle_tasks, stop_watchdog, stragglers
from ivr.speech.service import SpeechService, speech_from_config
from ivr.store.agents import AgentStore, CallbackStore
from ivr.store.continuations import ContinuationStore
from ivr.store.customers import CallerProfiles, CustomerStore
from ivr.store.flow_versions import FlowVersionStore
from ivr.store.funnels import FunnelStore
from ivr.store.journeys import JourneyStore, make_engine
from ivr.store.kpis import KpiStore
from ivr.store.leases import LeaseStore
from ivr.telemetry import LoopLagProbe, Telemetry
from ivr.web.app import WebServer, create_app
from ivr.web.auth import bearer_token
from ivr.web.chat import ChatSettings, adopt_waiting_chats, setup_chat, setup_sms
from ivr.web.desktop import login_limiter, setup_desktop
from ivr.web.funnel import setup_funnel
from ivr.web.health import Readiness, setup_health
from ivr.web.kpis import setup_kpis
from ivr.web.studio import FlowLookup, Studio, setup_studio
from ivr.web.supervisor import setup_supervisor

log = logging.getLogger(__name__)


class SpeechSlot:
    """The speech service once ``start()`` has loaded it: what every new call reads.

    Why a slot and not the service: the calls' handler is built with everything else in
    ``App.__init__``, but the service only exists after its model is loaded and its port bound
    (``start()``), and is dropped before it stops. Calls read :attr:`current` when they begin, so
    the handler is built complete and nobody assigns into it later.
    """

    def __init__(self) -> None:
        self._service: SpeechService | None = None

    @property
    def current(self) -> SpeechService | None:
        return self._service

    def hold(self, service: SpeechService | None) -> None:
        """The running service from now on (None: keys only, e.g. while it stops)."""
        self._service = service


class App:
    """Builds every service in dependency order, each given what it needs in its constructor."""

    def __init__(self, config: Config) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        half_life = config.personalize.half_life_days * DAY
        #: the operators' figures: observed by the hot paths, read from the services at scrape
        self.telemetry = Telemetry()
        if not 0.0 <= config.personalize.holdout <= 1.0:
            raise ConfigError(f"personalize.holdout must be a share between 0 and 1, not {config.personalize.holdout}")
        self.routing = RoutingRules.from_settings(config.routing)
        self.flows = FlowLibrary(Path(config.flows.dir))
        self.store = JourneyStore(
            make_engine(config.database_url),
            half_life_days=config.personalize.half_life_days,
            observe_batch=self.telemetry.journey_batch_seconds.observe,
        )
        self.customers = CustomerStore(self.store.engine, country_code=config.phone.country_code)
        self.continuations = ContinuationStore(self.store.engine)
        self.speech_slot = SpeechSlot()
        #: Loaded in start() (it reads a model): None means menus take keys only.
        self.speech: SpeechService | None = None

        # The ACD: AMI (only with ami.secret set), the pub/sub bus, callbacks.
        self.bus = bus_from_url(config.pubsub.url)
        self.ami: AmiClient | None = None
        if config.ami.secret:
            self.ami = AmiClient(
                host=config.ami.host,
                port=config.ami.port,
                username=config.ami.username,
                secret=config.ami.secret,
                events=True,
            )
        self.agents = AgentStore(self.store.engine)
        self.acd = Acd(
            ami=self.ami,
            journeys=self.store,
            customers=self.customers,
            bus=self.bus,
            recent_contact_s=config.desktop.contact_window,
            chat_leave_grace=config.queue.chat_leave_grace,
            transfer_dial=config.transfer.dial,
            transfer_caller_id=config.transfer.caller_id,
            tz=zone(config.desktop.timezone),
        )
        #: the supervisors' wallboard, published from this node's ACD state over the bus
        #: today's KPIs for the wallboard, read every few seconds by one task (never per browser)
        self.today_kpis = TodayKpis(KpiStore(self.store.engine), service_level_s=config.kpi.service_level_s)
        self.wallboard = WallboardPublisher(
            self.bus,
            lambda: snapshot(
                self.acd.states.values(),
                self.acd.waiting,
                config.routing.queues,
                contexts=self.acd.waiting_contexts(),
                kpis=self.today_kpis.latest,
            ),
        )
        self.callbacks = Callbacks(
            self.acd,
            CallbackStore(self.store.engine),
            dial=config.callbacks.dial,
            offer_after=config.callbacks.offer_after,
            handle_time=config.queue.handle_time,
            hours=self._queue_hours,
            shared=lambda: self.queue_views.current(),  # the leader's view, on every node
        )
        #: what queue estimates read on any node: published by the leader, read by all
        self.queue_views = QueueViews(self.bus, self.callbacks.view, is_leader=lambda: self.leadership.is_leader)
        #: one node at a time drives the ACD from AMI, publishes the wallboard and dials callbacks
        self.leadership = Leadership(LeaseStore(self.store.engine), on_lead=self._lead, on_follow=self._follow)
        #: desktops' commands reach the leader's ACD from any node
        #: click-to-call from the desktop (needs AMI: on the leader, through the desk's "call" op)
        self.outbound = (
            Outbound(
                self.acd,
                caller_id=config.outbound.caller_id,
                dial=config.outbound.dial,
                context=config.outbound.context,
                typed_prefixes=config.outbound.typed_prefixes,
            )
            if self.ami is not None
            else None
        )
        self.desk = AcdDesk(
            self.acd,
            self.bus,
            node=self.leadership.holder,
            is_leader=lambda: self.leadership.is_leader,
            outbound=self.outbound,
            # every node derives softphone passwords alike from the secret they share
            keys=SoftphoneKeys.from_secret(config.ami.secret) if config.ami.secret else None,
        )

        # Text: the SMS outbox, continuation links, the chat and SMS conversations.
        secret = config.handoff.secret
        self.codec = TokenCodec(secret) if secret else None
        self.sms_provider: SmsProvider | None = None
        outbox: SmsOutbox | None = None  # sends now, and queues replies while the gateway is down
        if config.sms.provider == "kannel":
            self.sms_provider = KannelProvider(
                config.sms.kannel_url,
                config.sms.kannel_username,
                config.require_secret(SmsSettings.kannel_password),
                sender=config.sms.sender,
                dlr_url=self._dlr_url if config.sms.inbound_token else "",
            )
            outbox = SmsOutbox(self.sms_provider, self.store)
        elif config.sms.provider != "off":
            raise ConfigError(f"sms.provider must be kannel or off, not {config.sms.provider!r}")
        self.sms_outbox = outbox
        self.handoffs = Handoffs(
            self.codec, self.continuations, outbox, base_url=self.public_url, ttl=config.handoff.ttl
        )
        self.chat = self._text_flows("chat", half_life)
        self.sms: SmsChannel | None = None
        sms_profiles = CallerProfiles(self.customers, timeout=config.customers.lookup_timeout)
        #: caller lookups, stopped (their first-call creations awaited) before the store
        self.profiles = [sms_profiles]
        if outbox is not None:
            self.sms = SmsChannel(
                outbox,
                self._text_flows("sms", half_life),
                pick_flow=lambda: self.pick_flow(config.sms.flow or None, ""),
                profiles=sms_profiles,
                open_journeys=self.continuations,
                country_code=config.phone.country_code,
            )

        # Voice: the inbound route, with everything a call may use.
        voice_profiles = CallerProfiles(
            self.customers,
            timeout=config.customers.lookup_timeout,
            observe_lookup=self.telemetry.caller_lookup_seconds.observe,
            observe_create=self.telemetry.customer_create_seconds.observe,
        )
        self.profiles.append(voice_profiles)
        self.inbound = InboundCalls(
            self.flows,
            self.pick_flow,
            self.store,
            prefix=config.prompts.prefix,
            profiles=voice_profiles,
            half_life=half_life,
            speech=self.speech_slot,
            queue_desk=self.callbacks if self.ami is not None else None,  # estimates need live queue state
            handoff=self.handoffs.send,
            # a journey can be open on another channel only with links or SMS
            open_journeys=self._open_journey if self.codec is not None or self.sms is not None else None,
            routing=self.routing,
            transfer_dial=config.transfer.dial,
            holdout=config.personalize.holdout,
            observe_flow=self.telemetry.flow_seconds.observe,
        )

        # HTTP: the API, the chat pages, Kannel's callbacks, the agent desktop.
        self.web = WebServer(
            create_app(self.customers, bearer_token(config.api.token)),
            host=config.web.host,
            port=config.web.port,
            header_timeout=config.web.header_timeout,
            idle_timeout=config.web.idle_timeout,
            max_connections=config.web.max_connections,
            reserved_descriptors=config.web.reserved_descriptors,
        )
        self.chat_settings = ChatSettings(
            self.codec,
            self.continuations,
            self.chat,
            config.handoff.ttl,
            secure_cookie=config.handoff.base_url.startswith("https:"),
            call_me=self.call_me if self.ami is not None else None,
            agents=ChatsViaLeader(self.desk),  # blended agents, in the ACD leader's memory
            bus=self.bus,
        )
        setup_chat(self.web.app, self.chat_settings)
        if self.sms is not None:
            setup_sms(self.web.app, self.sms, config.sms.inbound_token)
        setup_kpis(
            self.web.app,
            KpiStore(self.store.engine),
            service_level_s=config.kpi.service_level_s,
            max_window_s=config.kpi.max_days * DAY,
        )
        funnels = FunnelStore(self.store.engine)
        setup_funnel(self.web.app, funnels, max_window_s=min(config.kpi.max_days * DAY, MAX_FUNNEL_S))
        setup_desktop(
            self.web.app,
            acd=self.acd,
            agents=self.agents,
            bus=self.bus,
            desk=self.desk,
            secure_cookies=config.desktop.secure_cookies,
            session_check=config.desktop.session_check,
            login_limits=login_limiter(config.desktop),
            softphone_url=config.desktop.softphone_wss_url,
            softphone_revoke_grace=config.desktop.softphone_revoke_grace,
        )
        setup_supervisor(self.web.app)
        setup_studio(
            self.web.app,
            Studio(
                directory=self.flows.directory,
                versions=FlowVersionStore(self.store.engine),
                reload=self.reload_flows,
                live=self.flows.get,
                simulate=self._simulate,
                queues=self._defined_queues,
                funnels=funnels,
            ),
        )

        self.routes: dict[str, Handler] = {"inbound": self.inbound}
        self.routes["continue"] = self.inbound.continue_call  # "call me now"
        self.agi = AgiServer(
            self.route,
            host=config.agi.host,
            port=config.agi.port,
            header_timeout=config.agi.header_timeout,
            command_timeout=config.agi.command_timeout,
            observe_command=self.telemetry.agi_command_seconds.observe,
            observe_control=self.telemetry.agi_control_seconds.observe,
            observe_first=self.telemetry.agi_first_command_seconds.observe,
        )
        self._register_readings()
        setup_health(
            self.web.app,
            telemetry=self.telemetry,
            readiness=Readiness(self._readiness_checks()),
            info=lambda: {"role": self.leadership.role},
            authorize=bearer_token(config.web.metrics_token, env_name="IVR_WEB_METRICS_TOKEN"),
        )
        self._watcher: asyncio.Task[None] | None = None
        #: how late the event loop runs: every call's next command waits that long
        self.loop_probe = LoopLagProbe(
            self.telemetry.loop_lag_seconds.observe,
            slow_callback=0.02 if config.log.level.upper() == "DEBUG" else None,
        )

    def _register_readings(self) -> None:
        """What ``/metrics`` reads from the services at each scrape (nothing here runs per call)."""
        t = self.telemetry
        t.gauge("ivr_agi_calls_active", "Calls in progress on the FastAGI server.", lambda: self.agi.active_calls)
        t.counter("ivr_agi_calls", "Calls that delivered an AGI environment.", lambda: self.agi.total_calls)
        t.counter(
            "ivr_agi_calls_failed",
            "Calls that ended on the dialplan fallback (unknown route, handler error, timeout); hangups are not.",
            lambda: self.agi.failed_calls,
        )
        t.gauge(
            "ivr_journey_writer_queue",
            "Journeys and events waiting for the journey writer (grows while the database is away).",
            lambda: self.store.backlog,
        )
        t.counter("ivr_journey_commits", "Batches the journey writer committed.", lambda: self.store.commits)
        t.counter(
            "ivr_speech_listens", "Menus listened to.", lambda: self.speech.listens if self.speech is not None else 0
        )
        t.counter(
            "ivr_speech_failures",
            "Listens that fell back to keys because speech failed.",
            lambda: self.speech.failures if self.speech is not None else 0,
        )
        ami = self.ami
        t.gauge("ivr_ami_configured", "1 when AMI is configured (ami.secret set).", lambda: float(ami is not None))
        if ami is not None:
            t.gauge("ivr_ami_connected", "1 while logged in to AMI.", lambda: float(ami.is_connected))
            t.counter("ivr_ami_events", "AMI events received.", lambda: ami.events_seen)
            t.gauge("ivr_ami_event_lag", "AMI events waiting for their handlers.", lambda: ami.lag)
        lead = self.leadership
        t.gauge(
            "ivr_acd_leader",
            "1 while this node holds the ACD lease (drives AMI, dials callbacks).",
            lambda: float(lead.is_leader),
        )
        t.counter(
            "ivr_acd_role_changes", "Times this node became or stopped being the ACD leader.", lambda: lead.changes
        )
        bus = self.bus
        if isinstance(bus, RedisBus):
            t.gauge("ivr_pubsub_outbox", "Messages waiting in this node's pub/sub outbox.", lambda: bus.buffered)
            t.counter("ivr_pubsub_dropped", "Messages dropped from a full pub/sub outbox.", lambda: bus.dropped)
        else:  # in-process delivery: nothing ever waits
            t.gauge("ivr_pubsub_outbox", "Messages waiting in this node's pub/sub outbox.", lambda: 0)

    def _readiness_checks(self) -> dict[str, Callable[[], Awaitable[bool]]]:
        """What ``/readyz`` requires: calls can connect, journeys can be written, and queue events
        arrive when AMI is configured."""

        async def agi() -> bool:
            return self.agi.serving

        async def database() -> bool:
            await self.store.ping()
            return True

        checks: dict[str, Callable[[], Awaitable[bool]]] = {"agi": agi, "database": database}
        ami = self.ami
        if ami is not None:

            async def ami_connected() -> bool:
                return ami.is_connected or not self.leadership.is_leader  # only the ACD leader holds AMI

            checks["ami"] = ami_connected
        return checks

    def _text_flows(self, channel: str, half_life: float) -> TextFlows:
        """A text channel's driver (chat, SMS): the same engine, links, routing and queue desk."""
        return TextFlows(
            channel,
            self.flows,
            self.store,
            profile=self._profile_of,
            handoff=self.handoffs.send,
            half_life=half_life,
            routing=self.routing,
            queue_desk=self.callbacks if self.ami is not None else None,  # estimates need live queue state
            holdout=self.config.personalize.holdout,
        )

    def public_url(self) -> str:
        """Where customers reach the chat pages: handoff.base_url, else this server (its port is
        only known once it listens, so this is read when a link is made)."""
        return self.config.handoff.base_url or f"http://{self.config.web.host}:{self.web.port}"

    def _dlr_url(self) -> str:
        """Where Kannel reports deliveries ({ref}: our reference; Kannel fills %d)."""
        return f"{self.public_url()}/sms/kannel/dlr?key={self.config.sms.inbound_token}&ref={{ref}}&status=%d"

    async def _open_journey(self, customer: str) -> str | None:
        """The customer's journey open on another channel within the link lifetime, if any."""
        return await self.continuations.open_journey_of_customer(customer, time.time() - self.config.handoff.ttl)

    def _queue_hours(self, journey: Journey, queue: Queue) -> BusinessHours | None:
        """The calendar of the journey's flow for this queue (the rule the queue step uses too)."""
        try:
            hours = self.flows.get(journey.flow, journey.version).hours
        except KeyError:
            return None
        return calendar_for(hours, queue.queue, queue.skill)

    async def _start_acd(self) -> None:
        await self.bus.start()
        await self.desk.start()
        await self.queue_views.start()
        if self.ami is None:
            log.warning("AMI off (set IVR_AMI_SECRET): the agent desktop works but no queue events arrive")
        await self.leadership.start()  # the first attempt is made here: a lone node leads before its first call
        if self.ami is not None and self.leadership.is_leader:
            with contextlib.suppress(TimeoutError):
                await wait_for(self.ami.connected.wait(), 5.0)
            if not self.ami.connected.is_set():
                log.warning("AMI not reachable yet at %s:%d; retrying in the background", self.ami.host, self.ami.port)

    async def _lead(self, token: int) -> None:
        """This node took the ACD lease: connect to AMI (the ACD rebuilds its state from Asterisk
        on login), publish the wallboard, dial callbacks under ``token``. Nothing here waits for
        AMI: the lease is renewed by the task that called this. AMI's login starts first: it is
        what the pops and callbacks wait for, and it runs while the rest starts."""
        if self.ami is not None:
            await self.ami.start()
            await self.callbacks.start(token)
        await self.today_kpis.start()  # the wallboard's figures: read where the board is published
        await self.wallboard.start()
        await self.queue_views.lead()
        await self.desk.serve(token)  # answer every node's desktops; log their agents in again here
        try:  # the chats that waited for an agent in the previous leader's memory wait here now
            adopted = await adopt_waiting_chats(self.store, self.acd.chats, now=time.time())
        except Exception:  # the pages still offer them; only their earlier wait is not known
            log.exception("waiting chats not adopted from the store")
        else:
            if adopted:
                log.info("%d waiting chats adopted from the previous ACD leader", adopted)

    async def _follow(self) -> None:
        """This node no longer holds the ACD lease: stop dialling and drop AMI before another
        node starts (its queue view would go stale; the leader's is the one that counts)."""
        await self.desk.unserve()
        await self.callbacks.stop()
        if self.ami is not None:
            await self.ami.stop()
        await self.acd.forget()
        await self.queue_views.follow()
        await self.wallboard.stop()
        await self.today_kpis.stop()

    async def _stop_acd(self) -> None:
        await self.leadership.stop()  # steps down (the duties above) and gives the lease up
        await self.desk.stop()
        await self.queue_views.stop()
        await self.acd.stop()
        await self.bus.stop()

    async def _profile_of(self, journey: Journey) -> CallerProfile | None:
        """What a text channel knows about the customer of a journey (prefill, ranking); never fatal."""
        if not journey.customer_id:
            return None
        try:
            return await wait_for(
                self.customers.load_profile(customer_id=journey.customer_id), self.config.customers.lookup_timeout
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
            self.config.callbacks.dial.format(number=journey.caller),
            context="ivr-continue",
            exten="s",
            caller_id=self.config.sms.sender or "ivr",
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
        if self.codec is None:
            log.warning("continuation links are off until IVR_HANDOFF_SECRET (handoff.secret) is set")
        if self.sms_outbox is not None:
            await self.sms_outbox.start()
            log.info("SMS channel on %s", self.sms_outbox.provider.name)

    def route(self, env: AgiEnvironment) -> Handler | None:
        """An AGI route's name is the path in the dialplan's AGI() URL: agi://host:port/<route>."""
        return self.routes.get(env.route)

    def pick_flow(self, requested: str | None, dialled: str) -> Flow:
        try:
            if requested:
                return self.flows.get(requested)
            return self.flows.for_number(dialled) or self.flows.get(self.config.flows.default)
        except KeyError:
            raise ChannelError(f"no flow {requested or self.config.flows.default!r} is loaded") from None

    def reload_flows(self) -> None:
        report = self.flows.reload()
        for name in report.loaded:
            log.info("flow ready: %s", name)
        loaded = [entry.partition("@")[0] for entry in report.loaded]  # "name@version"
        for problem in self._check_queues(loaded).problems:  # the flow runs; Asterisk will misroute
            log.error("%s (calls there go to the catch-all queue)", problem)

    async def _simulate(
        self, flows: FlowLookup, flow: str, caller: str | None, channel: str, inputs: Sequence[str]
    ) -> Transcript:
        """The studio's simulator: the caller's real profile (read only), this node's routing and
        personalization settings; words matched by the word rules."""
        profile = None
        if caller:
            try:
                profile = await wait_for(
                    self.customers.load_profile(phone=caller), self.config.customers.lookup_timeout
                )
            except Exception as exc:  # as on a call: a slow or failing store makes an unknown caller
                log.warning("simulated caller %s as unknown: %s", caller[-4:], exc)
        return simulate(
            flows,
            flow,
            caller=caller,
            channel=channel,
            inputs=inputs,
            profile=profile,
            routing=self.routing,
            half_life=self.config.personalize.half_life_days * DAY,
            holdout=self.config.personalize.holdout,
        )

    def _defined_queues(self) -> tuple[str, frozenset[str]] | None:
        """queues.conf's queues, for the studio's check (None: no file, as ``ivr check`` warns)."""
        conf = self.config.routing.queues_conf
        try:
            return str(conf), defined_queues(Path(conf).read_text())
        except FileNotFoundError:
            return None

    def _check_queues(self, names: Iterable[str]) -> QueueCheck:
        return check_queues(
            self.routing, queues_named(self.flows.get(n) for n in names), self.config.routing.queues_conf
        )

    async def start(self) -> None:
        report = self.flows.reload()
        if not self.flows.names():
            raise ConfigError(f"no usable flow in {self.flows.directory}: " + "; ".join(map(str, report.problems)))
        if self.config.flows.default not in self.flows.names():
            log.warning(
                "default flow %r is not loaded; calls without a flow go to the fallback", self.config.flows.default
            )
        queues = self._check_queues(self.flows.names())
        if queues.problems:
            raise ConfigError("queues Asterisk does not define:\n  " + "\n  ".join(queues.problems))
        if queues.warning:
            log.warning("%s", queues.warning)
        await self.store.start()  # brings the database schema to head first
        await self.web.start()
        if not self.config.api.token:
            log.warning("HTTP API disabled (it answers 503) until IVR_API_TOKEN is set")
        await self._start_text_channels()
        await self._start_acd()
        await self._start_speech()  # before the first call can arrive
        await self.agi.start()
        self._watcher = asyncio.create_task(self._watch_flows(), name="flow-watcher")
        await self.loop_probe.start()  # last: a start that failed above leaves no probe running
        log.info(
            "FastAGI listening on %s:%d with flows %s",
            self.config.agi.host,
            self.agi.port,
            ", ".join(self.flows.names()),
        )

    async def _start_speech(self) -> None:
        """A model asked for but missing is a ConfigError (start-up fails, clearly); a port that
        cannot be bound only costs speech: calls go on with keys, said once at ERROR."""
        speech = await speech_from_config(
            self.config.speech, self.config.prompts.dir, observe_decode=self.telemetry.speech_decode_seconds.observe
        )
        if speech is None:
            return
        try:
            await speech.start()
        except OSError as exc:
            log.error("speech off: cannot listen for AudioSocket on %s: %s", speech.server.address, exc)
            await speech.stop()
            return
        self.speech_slot.hold(speech)
        self.speech = speech

    async def stop(self) -> None:
        await self.loop_probe.stop()
        await self.agi.stop()
        if self.speech is not None:
            self.speech_slot.hold(None)
            await self.speech.stop()
            self.speech = None
        if self._watcher:
            await cancel_and_wait(self._watcher)
            self._watcher = None
        await self.web.stop()
        await self._stop_acd()
        if self.sms_outbox is not None:
            await self.sms_outbox.stop()
        for profiles in self.profiles:
            await profiles.stop()
        self.customers.close()
        self.continuations.close()
        self.leadership.leases.close()
        await self.store.stop()
        log.info("stopped after %d calls: %s", self.inbound.calls, self.inbound.finished)

    async def _watch_flows(self) -> None:
        interval = self.config.flows.watch_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if self.flows.changed():
                    self.reload_flows()
            except Exception:  # a watcher that dies silently would freeze flows forever
                log.exception("flow reload failed")


#: Allocations (net of frees) between two collections of the cyclic collector's youngest
#: generation; Python's default is 700. A call allocates thousands of objects that reference
#: counting frees at once; what is still alive at a collection (the calls in progress) is walked
#: again at every one. At 200 calls a second the default ran about seven collections a second,
#: 15 us of the loop's CPU per call; this runs about one, 1 us per call (bench/README.md).
#: Cyclic garbage waits a few thousand allocations longer: a few hundred kB at most.
YOUNG_COLLECTION_EVERY = 10_000


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT; SIGHUP reloads flows."""
    app = App(config)
    await app.start()
    # Everything loaded so far (flows, models, libraries: about 100,000 objects with a recognizer)
    # lives as long as the process. Freezing it takes it out of the cyclic collector's scans, so
    # a full collection during calls walks only what calls allocate (66 ms -> well under 1 ms).
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, app.reload_flows)
    loop.add_signal_handler(signal.SIGUSR1, log_tasks, "SIGUSR1")  # what is this process doing?
    if ready:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        with stop_watchdog():  # a stop that hangs names the tasks it waits for
            await app.stop()
        left = await settle_tasks()  # what no owner awaited; asyncio.run would wait for it unbounded
        if left:
            log_tasks("still running after stop")
            exit_leaving(stragglers(0.0))
