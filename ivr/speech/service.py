"""Speech for the voice channel: one object the composition root owns and the channel asks.

``SpeechService.menu`` is what a voice menu does when it may listen: play the menu's fragments
through the AudioSocket while hearing the caller (speech or a key barges in), endpoint the answer,
recognise it, map it to an option, and answer with the one ``InputResult`` type every channel
uses. Anything that goes wrong on the speech side answers ``None`` instead: the channel then plays
the same menu with STREAM FILE and takes keys (the caller hears the menu again, nothing more),
and stops trying speech for the rest of the call.

What is *not* a failure: the caller hanging up (``CallEnded`` from the AGI session, as everywhere),
silence (``noinput``), words that match no option (``nomatch``), a key (``dtmf``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal, Protocol

from ivr.agi import commands as agi
from ivr.agi.server import AgiSession
from ivr.config import SpeechSettings
from ivr.errors import ChannelError, CommandTimeout, ConfigError
from ivr.flow.model import Choice, InputResult, Menu
from ivr.speech.batching import BatchRecognizer, DecodeBatcher
from ivr.speech.embedding import SentenceEncoder
from ivr.speech.endpoint import EndpointSettings
from ivr.speech.intents import IntentMatch, IntentMatcher, to_input_result
from ivr.speech.listener import AudioSocketServer, ListenRequest, ListenResult
from ivr.speech.pool import Admission, speech_executor
from ivr.speech.prompt_audio import PromptAudio
from ivr.speech.recognizer import Recognizer, Transcript, load_recognizer
from ivr.speech.semantic import SemanticMatcher, warm_examples

__all__ = ["IntentMatchers", "SpeechService", "endpoint_settings", "speech_from_config"]

log = logging.getLogger(__name__)

#: Plays one sound file with STREAM FILE, every key an escape; returns the key pressed, if any.
PlayFile = Callable[[str], Awaitable[str | None]]
DEFAULT_SOUNDS_DIR = "/usr/share/asterisk/sounds/en"
MATCH_MARGIN_S = 0.15
"""Of the latency budget, what is kept for matching the words to an option (the semantic
matcher: 10-40 ms p99 on a busy machine, bench/README.md) and the AGI round trip after it."""


class MenuMatcher(Protocol):
    """What the service asks of a menu's matcher (lexical or semantic)."""

    def match(self, text: str) -> IntentMatch: ...

    def phrases(self, language: str = "en") -> list[str]: ...


class IntentMatchers:
    """One matcher per distinct menu (its choices), built once and kept: semantic when an encoder
    is given (its examples encoded once per process), else the lexical rules alone.

    ``phrases`` is what the recognizer is primed with at that menu (Vosk grammar, Whisper prompt).
    """

    def __init__(self, language: str = "en", *, size: int = 256, encoder: SentenceEncoder | None = None) -> None:
        self.language = language
        self.encoder = encoder
        self._size = size
        self._cache: OrderedDict[tuple[Choice, ...], MenuMatcher] = OrderedDict()

    def matcher(self, choices: Sequence[Choice]) -> MenuMatcher:
        key = tuple(choices)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = (
                SemanticMatcher.from_choices(key, encoder=self.encoder)
                if self.encoder is not None
                else IntentMatcher.from_choices(key)
            )
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return found

    def phrases(self, choices: Sequence[Choice]) -> list[str]:
        return self.matcher(choices).phrases(self.language)


def endpoint_settings(speech: SpeechSettings) -> EndpointSettings:
    """The endpointer's tuning from the ``speech.*`` settings."""
    return EndpointSettings(
        threshold_dbfs=speech.threshold_dbfs,
        start_ms=speech.start_ms,
        end_silence_ms=speech.end_silence_ms,
        max_speech_ms=speech.max_speech_ms,
    )


class SpeechService:
    def __init__(
        self,
        recognizer: Recognizer,
        matchers: IntentMatchers,
        *,
        host: str = "127.0.0.1",
        port: int = 4574,
        sounds_dir: Path = Path(DEFAULT_SOUNDS_DIR),
        endpoint: EndpointSettings | None = None,
        workers: int = 2,
        decode_timeout: float = 15.0,
        latency_budget: float = 0.0,
        max_batch: int = 8,
        observe_decode: Callable[[float], None] | None = None,
    ) -> None:
        self.recognizer = recognizer
        #: told what each caller waited for their words after they stopped speaking (seconds)
        self._observe_decode = observe_decode
        #: None: no budget (every menu listens). Else menus are offered on keys when listening
        #: would make some caller wait past ``latency_budget`` seconds after they stop speaking.
        self.admission = Admission(latency_budget, workers) if latency_budget > 0 else None
        self.matchers = matchers
        self.endpoint = endpoint or EndpointSettings()
        self.prompts = PromptAudio(sounds_dir)
        self._executor = speech_executor(workers)
        #: Whisper decodes at the end of speech: the utterances of callers who finish while a
        #: decode runs are decoded together next (one at a time when ``max_batch`` is 1).
        self.batcher = (
            DecodeBatcher(recognizer.transcribe_batch, self._executor, max_batch=max_batch, parallel=workers)
            if isinstance(recognizer, BatchRecognizer) and max_batch > 1
            else None
        )
        self.server = AudioSocketServer(
            recognizer,
            host=host,
            port=port,
            executor=self._executor,
            decode_timeout=decode_timeout,
            batcher=self.batcher,
            # The matcher (tens of ms) runs after the words: it gets the budget's last part.
            answer_within=max(0.0, latency_budget - MATCH_MARGIN_S) if latency_budget > 0 else 0.0,
        )
        self.listens = 0
        self.failures = 0

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
        if self.batcher is not None:
            await self.batcher.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- the voice channel's entry points --------------------------------------------------

    async def menu(
        self, session: AgiSession, menu: Menu, fragments: Sequence[str], play: PlayFile
    ) -> InputResult | Literal["busy"] | None:
        """Play and listen for one menu; ``None`` means "speech failed, do this menu on keys";
        ``"busy"``: over the latency budget, nothing was played (the channel says so and
        offers keys at once)."""
        choices = menu.choices
        settings = replace(self.endpoint, noinput_ms=int(menu.timeout * 1000))
        try:
            # A new menu's semantic matcher encodes its labels (milliseconds, the intents'
            # examples are encoded at start): off the event loop, like every model call.
            phrases = await asyncio.to_thread(self.matchers.phrases, choices)
            prompt = await self.prompts.load(fragments)
        except Exception:  # our bug must cost speech, not the call
            self.failures += 1
            log.exception("cannot prepare listening at %s; falling back to keys", menu.step)
            return None
        if self.admission is not None and not self.admission.admit():
            # Over budget, decided before anything plays: keys at once (the channel says speech
            # is busy and plays this menu on keys, and keys only for the rest of the call, which
            # also lightens the load). Logged once a minute, counted.
            return "busy"
        decoded: float | None = None
        try:
            if prompt is None:
                # A fragment we cannot stream ourselves: Asterisk plays the menu (keys still
                # barge in), and we listen after it. Slower to interrupt by voice, but heard.
                for name in fragments:
                    digit = await play(name)
                    if digit:
                        return InputResult("match", "dtmf", digit)
                prompt = []
            heard = await self.listen(session, ListenRequest(prompt, phrases, settings))
            if heard.outcome in ("speech", "late"):
                decoded = heard.latency_s  # what the caller waited, queueing included
        finally:
            if self.admission is not None:
                self.admission.release(decoded)
        if heard.outcome == "late":
            # The words would come past the budget: the caller is told speech is busy and
            # offered keys now rather than left waiting in silence.
            if self.admission is not None:
                self.admission.count_late()  # counted, logged once a minute, limit halved
            return "busy"
        return await self.interpret(heard, choices)

    async def listen(self, session: AgiSession, request: ListenRequest) -> ListenResult:
        """One exchange over ``EXEC AudioSocket``; ``CallEnded`` if the caller hangs up meanwhile."""
        self.listens += 1
        try:
            listening = self.server.expect(request)
        except RuntimeError as exc:  # the server is stopping
            return ListenResult("failed", detail=str(exc))
        try:
            reply = await session.command(
                agi.exec_app("AudioSocket", [listening.uuid, self.server.address]),
                timeout=self.server.bound_s(request),
            )
            if not listening.connected:
                # EXEC returned without connecting: AudioSocket missing (result=-2), connect
                # failure, channel not answered (-1) ...
                return ListenResult("failed", detail=f"AudioSocket did not connect: {reply.raw}")
            async with asyncio.timeout(self.server.bound_s(request)):
                heard = await listening.result
            if heard.outcome == "speech" and self._observe_decode is not None:
                self._observe_decode(heard.latency_s)
            return heard
        except TimeoutError:
            return ListenResult("failed", detail="no result from the speech server in time")
        except CommandTimeout:
            raise  # the AGI session is closed: nothing more can be done on this call
        except ChannelError as exc:  # Asterisk refused the EXEC (the session is still in step)
            return ListenResult("failed", detail=str(exc))
        finally:
            await self.server.forget(listening)

    async def interpret(self, heard: ListenResult, choices: Sequence[Choice]) -> InputResult | None:
        """A listening outcome as the flow engine's ``InputResult`` (``None``: speech failed)."""
        if heard.outcome == "dtmf":
            return InputResult("match", "dtmf", heard.digit)
        if heard.outcome == "noinput":
            return InputResult("noinput", "speech")
        if heard.outcome != "speech":
            self.failures += 1
            log.warning("speech unavailable for this call (%s: %s); falling back to keys", heard.outcome, heard.detail)
            return None
        try:
            matcher = self.matchers.matcher(choices)
            found = await asyncio.to_thread(matcher.match, heard.text)  # the encoder: ms of CPU
        except Exception:  # a matcher bug must not end the call: the caller can still press keys
            self.failures += 1
            log.exception("intent matching failed for %r; falling back to keys", heard.text)
            return None
        # No words: noinput; words without an intent: nomatch; else the option (or an intent no
        # option claims) with the intent's confidence, lowered when the engine was unsure.
        result = to_input_result(Transcript(heard.text, heard.confidence, heard.engine, heard.latency_s), found)
        log.info(
            "%r -> %s %s (%s; confidence %.2f)",
            heard.text,
            result.status,
            result.interpretation,
            found.reason,
            result.confidence,
        )
        return replace(result, intent=found.intent, reason=found.reason)


async def speech_from_config(
    speech: SpeechSettings, prompts_dir: str = "", *, observe_decode: Callable[[float], None] | None = None
) -> SpeechService | None:
    """The process's speech service, or ``None`` for keys only (no engine, or ``speech.engine =
    off``). Loads the model once, off the event loop; raises ConfigError for a model asked for
    but missing (never downloads one). ``prompts_dir``: where built prompts are, the sounds
    played over AudioSocket when ``speech.sounds_dir`` is empty."""
    recognizer = await asyncio.to_thread(
        load_recognizer,
        speech.engine,
        language=speech.language,
        vosk_model=speech.vosk_model,
        whisper_model=speech.whisper_model,
        workers=speech.workers,
    )
    if recognizer is None:
        return None
    encoder = None
    if speech.matcher == "semantic":
        # Once per process, off the event loop: about 2 s to read the weights and encode the
        # shipped intents' examples. Missing model: ConfigError (scripts/bootstrap installs it).
        started = time.perf_counter()
        encoder = await asyncio.to_thread(warm_examples)
        log.info(
            "intent matcher: semantic (all-MiniLM-L6-v2, int8, loaded in %.1f s) with the word rules",
            time.perf_counter() - started,
        )
    elif speech.matcher == "lexical":
        log.info("intent matcher: lexical (the word rules alone)")
    else:
        raise ConfigError(f"speech.matcher must be semantic or lexical, not {speech.matcher!r}")
    sounds = speech.sounds_dir or prompts_dir or DEFAULT_SOUNDS_DIR
    return SpeechService(
        recognizer,
        IntentMatchers(speech.language, encoder=encoder),
        host=speech.host,
        port=speech.port,
        sounds_dir=Path(sounds),
        endpoint=endpoint_settings(speech),
        workers=speech.workers,
        decode_timeout=speech.decode_timeout,
        latency_budget=speech.latency_budget,
        max_batch=speech.max_batch,
        observe_decode=observe_decode,
    )
