"""Typed settings: values arrive with their types, file < environment, lists and tables, one table of keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import SECTIONS, SETTINGS, Config, SmsSettings, load_config
from ivr.errors import ConfigError


def test_values_are_typed_by_section_with_their_defaults() -> None:
    config = load_config(environ={})
    assert config.agi.port == 4573 and isinstance(config.agi.port, int)
    assert config.agi.header_timeout == 5.0 and isinstance(config.agi.header_timeout, float)
    assert config.desktop.secure_cookies is False
    assert config.routing.queues == ("main", "billing", "support", "outage", "sales")
    assert config.routing.intent_skills["pay"] == "billing"
    assert config.data_dir == Path("var")


def test_the_environment_wins_over_the_file_which_wins_over_the_default(tmp_path: Path) -> None:
    file = tmp_path / "ivr.toml"
    file.write_text(
        '[agi]\nport = 5000\nhost = "0.0.0.0"\n'
        '[routing]\nqueues = ["main", "vip"]\n'
        '[routing.intent_skills]\nvip = "vip"\n'
    )
    config = load_config(file, environ={"IVR_AGI_PORT": "6000", "IVR_DESKTOP_SECURE_COOKIES": "yes"})
    assert (config.agi.port, config.source("agi.port")) == (6000, "IVR_AGI_PORT")
    assert (config.agi.host, config.source("agi.host")) == ("0.0.0.0", str(file))
    assert config.desktop.secure_cookies is True
    assert config.routing.queues == ("main", "vip")
    assert config.routing.intent_skills == {"vip": "vip"}


def test_lists_and_tables_from_the_environment_and_bad_names_are_refused() -> None:
    config = load_config(
        environ={"IVR_ROUTING_QUEUES": "main, billing-es", "IVR_ROUTING_INTENT_SKILLS": "pay=billing,fix=support"}
    )
    assert config.routing.queues == ("main", "billing-es")
    assert config.routing.intent_skills == {"pay": "billing", "fix": "support"}
    with pytest.raises(ConfigError, match=r"routing\.queues from IVR_ROUTING_QUEUES"):
        load_config(environ={"IVR_ROUTING_QUEUES": "main,bad name"})
    with pytest.raises(ConfigError, match=r"routing\.intent_skills"):
        load_config(environ={"IVR_ROUTING_INTENT_SKILLS": "pay"})
    with pytest.raises(ConfigError, match=r"agi\.port from IVR_AGI_PORT: expected int"):
        load_config(environ={"IVR_AGI_PORT": "many"})


def test_every_setting_is_read_by_the_attribute_its_key_names_and_described() -> None:
    config = load_config(environ={})
    assert len({s.key for s in SETTINGS}) == len(SETTINGS)
    for prefix, section in SECTIONS.items():
        for setting in section.settings():
            assert setting.description
            if prefix:
                name = setting.key.removeprefix(prefix + ".")
                assert getattr(getattr(config, prefix), name) == setting.default, setting.key
    shown = {key: (value, source) for key, value, source, _ in config.rows()}
    assert set(shown) == {s.key for s in SETTINGS}
    assert shown["routing.queues"] == ("main,billing,support,outage,sales", "default")


def test_secrets_are_masked_and_required_by_name() -> None:
    config = load_config(environ={"IVR_API_TOKEN": "t0ken"})
    shown = {key: value for key, value, _, _ in config.rows()}
    assert shown["api.token"] == "(set)" and shown["sms.kannel_password"] == "(not set)"
    with pytest.raises(ConfigError, match="IVR_SMS_KANNEL_PASSWORD"):
        config.require_secret(SmsSettings.kannel_password)


def test_overrides_keep_the_types() -> None:
    config: Config = load_config(environ={}).with_overrides(agi_port="4600", agi_host=None)
    assert config.agi.port == 4600 and config.source("agi.port") == "command line"
