"""``ivr prompts build``: render every prompt text to a WAV that Asterisk can play.

Why a manifest: a flow set has hundreds of prompts and a neural voice takes a fraction of a
second each; a rebuild after editing one text must redo only that one. The manifest
(``<out_dir>/ivr/.manifest.json``) records, per sound name, the text, engine, voice and render
settings that made the file and the file's sha256. An item is skipped when all of them still
match and the file on disk still has that hash (a file damaged or replaced by hand is redone).

The sound name already carries a hash of the text (see :mod:`ivr.prompts.naming`), so an edited
text lands in a new file and never overwrites audio a live call may be playing; old files are
left in place for calls still using the previous flow version.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.errors import ConfigError
from ivr.prompts.tts import TELEPHONE_RATE, TtsEngine, atomic_write_bytes, get_engine, render_to_file

__all__ = ["MANIFEST_PATH", "RENDER_VERSION", "BuildReport", "PromptItem", "build_prompts"]

MANIFEST_PATH = Path("ivr") / ".manifest.json"
"""Relative to the output directory."""

RENDER_VERSION = f"tel1-{TELEPHONE_RATE}"
"""Bump when the audio processing changes, so that every prompt is rendered again."""

_MANIFEST_FORMAT = 1
_SAVE_EVERY = 20  # items; an interrupted build then loses little of its work

ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class PromptItem:
    """One sound to build: ``name`` as Asterisk plays it (``ivr/welcome-...``, no extension)."""

    name: str
    text: str


@dataclass
class BuildReport:
    engine: str
    rendered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _normalise_text(text: str) -> str:
    return " ".join(text.split())


def _unique_items(items: Iterable[PromptItem]) -> list[PromptItem]:
    """Items sorted by name, each name once. Whitespace-only differences in the text are one
    text (``prompt_audio_name`` hashes them equal); a name with two real texts is an error."""
    by_name: dict[str, PromptItem] = {}
    for item in items:
        _check_name(item.name)
        if not item.text.strip():
            raise ConfigError(f"prompt {item.name!r} has an empty text")
        seen = by_name.get(item.name)
        if seen is None:
            by_name[item.name] = item
        elif _normalise_text(seen.text) != _normalise_text(item.text):
            raise ConfigError(
                f"prompt name {item.name!r} is used for two different texts: {seen.text!r} and {item.text!r}"
            )
    return [by_name[name] for name in sorted(by_name)]


def _check_name(name: str) -> None:
    path = Path(name)
    if (
        not name
        or path.is_absolute()
        or ".." in path.parts
        or name.endswith("/")
        or path.name.startswith(".")
        or "\\" in name
    ):
        raise ConfigError(f"bad prompt sound name {name!r}: want a relative path like 'ivr/welcome-1a2b3c4d'")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The manifest's entries; an unreadable or foreign manifest means "nothing is cached"."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _MANIFEST_FORMAT:
        return {}
    prompts = data.get("prompts")
    if not isinstance(prompts, dict):
        return {}
    return {name: entry for name, entry in prompts.items() if isinstance(entry, dict)}


def _save_manifest(path: Path, prompts: dict[str, dict[str, Any]]) -> None:
    body = {"format": _MANIFEST_FORMAT, "prompts": dict(sorted(prompts.items()))}
    atomic_write_bytes(path, (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode())


def build_prompts(
    items: Iterable[PromptItem],
    out_dir: Path,
    *,
    engine: str | TtsEngine = "auto",
    force: bool = False,
    progress: ProgressFn | None = None,
) -> BuildReport:
    """Render each item to ``<out_dir>/<name>.wav`` (8 kHz 16-bit mono), skipping those that
    are up to date unless ``force``.

    Items are done in name order, each distinct name once. ``progress(i, total, name)`` is
    called after each item, rendered or skipped (``i`` from 1); the report says which was which.
    ``engine`` is a name for :func:`get_engine` (``"auto"``: the best installed) or an engine
    instance, e.g. one already loaded and shared between builds.

    Raises :class:`ConfigError` for a missing/unknown engine or a bad item, and
    :class:`~ivr.prompts.tts.TtsError` if the engine fails; files rendered before the failure
    are kept and recorded, so a rerun continues where it stopped.
    """
    started = time.perf_counter()
    unique = _unique_items(items)
    tts = get_engine(engine) if isinstance(engine, str) else engine
    report = BuildReport(engine=tts.name)

    manifest_path = out_dir / MANIFEST_PATH
    manifest = _load_manifest(manifest_path)
    dirty = 0
    try:
        for index, item in enumerate(unique, start=1):
            wav = out_dir / f"{item.name}.wav"
            wanted = {
                "text": _normalise_text(item.text),
                "engine": tts.name,
                "voice": tts.voice,
                "render": RENDER_VERSION,
            }
            entry = manifest.get(item.name)
            if (
                not force
                and entry is not None
                and all(entry.get(key) == value for key, value in wanted.items())
                and wav.is_file()
                and entry.get("sha256") == _sha256(wav)
            ):
                report.skipped.append(item.name)
            else:
                render_to_file(tts, item.text, wav, rate=TELEPHONE_RATE)
                manifest[item.name] = {**wanted, "sha256": _sha256(wav)}
                report.rendered.append(item.name)
                dirty += 1
                if dirty >= _SAVE_EVERY:
                    _save_manifest(manifest_path, manifest)
                    dirty = 0
            if progress is not None:
                progress(index, len(unique), item.name)
    finally:
        if dirty:
            _save_manifest(manifest_path, manifest)
        report.seconds = time.perf_counter() - started
    return report
