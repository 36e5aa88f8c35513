"""The composition root owns speech: loaded before calls arrive, stopped after they end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr import app as app_module
from ivr.app import App
from ivr.config import Config, load_config
from ivr.speech.service import IntentMatchers, SpeechService, speech_from_config
from tests.unit.bounded import stop_bounded
from tests.unit.speech.fakes import FakeRecognizer

DIALPLANS = Path(__file__).resolve().parents[3] / "dialplans"


def config(tmp_path: Path, **env: str) -> Config:
    return load_config(
        environ={
            "IVR_FLOWS_DIR": str(DIALPLANS),
            "IVR_DATA_DIR": str(tmp_path),
            "IVR_AGI_PORT": "0",
            "IVR_WEB_PORT": "0",
            **env,
        }
    )


async def test_engine_off_means_keys_only(tmp_path: Path) -> None:
    app = App(config(tmp_path, IVR_SPEECH_ENGINE="off"))
    await app.start()
    try:
        assert app.speech is None and app.speech_slot.current is None
    finally:
        await stop_bounded(app.stop)


async def test_speech_is_started_before_calls_and_stopped_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SpeechService(FakeRecognizer(), IntentMatchers(), port=0, sounds_dir=tmp_path)

    async def fake(*_: object, **__: object) -> SpeechService:
        return service

    monkeypatch.setattr(app_module, "speech_from_config", fake)
    app = App(config(tmp_path))
    await app.start()
    try:
        assert app.speech is service and app.speech_slot.current is service
        host, port = service.server.address.rsplit(":", 1)
        assert host == "127.0.0.1"
        _, writer = await asyncio.open_connection(host, int(port))  # it is listening
        writer.close()
    finally:
        await stop_bounded(app.stop)
    assert app.speech is None and app.speech_slot.current is None
    with pytest.raises(OSError):
        await asyncio.open_connection(host, int(port))


async def test_a_port_in_use_costs_speech_not_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    service = SpeechService(FakeRecognizer(), IntentMatchers(), port=port, sounds_dir=tmp_path)

    async def fake(*_: object, **__: object) -> SpeechService:
        return service

    monkeypatch.setattr(app_module, "speech_from_config", fake)
    app = App(config(tmp_path))
    try:
        await app.start()
        assert app.speech is None and app.speech_slot.current is None
    finally:
        await stop_bounded(app.stop)
        blocker.close()


async def test_speech_from_config_reads_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ivr.speech.service.load_recognizer", lambda *a, **k: FakeRecognizer())
    cfg = config(tmp_path, IVR_SPEECH_PORT="4999", IVR_PROMPTS_DIR="/srv/sounds", IVR_SPEECH_END_SILENCE_MS="900")
    service = await speech_from_config(cfg.speech, cfg.prompts.dir)
    assert service is not None
    assert service.server.address == "127.0.0.1:4999"
    assert service.prompts.sounds_dir == Path("/srv/sounds")
    assert service.endpoint.end_silence_ms == 900
    monkeypatch.setattr("ivr.speech.service.load_recognizer", lambda *a, **k: None)
    assert await speech_from_config(cfg.speech, cfg.prompts.dir) is None
