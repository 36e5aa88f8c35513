"""Prompt files as slin PCM, for playing them to the caller through the AudioSocket.

Why we read Asterisk's sound files ourselves: while listening, the prompt is played over the
same socket the caller's audio arrives on, so the caller can talk over it (see ``listener.py``).
The files are the ones STREAM FILE plays -- ``ivr prompts build`` output and Asterisk's own
``digits/N`` -- looked up the way Asterisk does for one language: ``<sounds_dir>/<name>.wav``
(8 kHz, 16-bit, mono) or ``<name>.sln`` (raw slin). Anything else (a GSM-only recording, a
16 kHz file, a missing prompt) makes :meth:`PromptAudio.load` answer ``None`` and the voice
channel plays that menu with STREAM FILE instead: slower to interrupt, never silent.

Decoded prompts are cached by path and modification time (a rebuilt prompt is picked up).
"""

from __future__ import annotations

import asyncio
import logging
import wave
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = ["PromptAudio"]

log = logging.getLogger(__name__)

_CACHE_SIZE: Final = 512
_MAX_FILE_BYTES: Final = 8000 * 2 * 120  # two minutes of slin: a "prompt" longer than that is a mistake


class PromptAudio:
    def __init__(self, sounds_dir: Path, *, sample_rate: int = 8000) -> None:
        self.sounds_dir = sounds_dir
        self.sample_rate = sample_rate
        self._cache: OrderedDict[Path, tuple[int, bytes]] = OrderedDict()
        self._warned: set[str] = set()

    async def load(self, names: Sequence[str]) -> list[bytes] | None:
        """PCM of each named sound, in order; ``None`` if any one cannot be played by us."""
        return await asyncio.to_thread(self.load_sync, names)

    def load_sync(self, names: Sequence[str]) -> list[bytes] | None:
        out: list[bytes] = []
        for name in names:
            pcm = self._one(name)
            if pcm is None:
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning(
                        "cannot play %r over AudioSocket (no 8 kHz 16-bit mono .wav/.sln in %s); "
                        "menus with it are played with STREAM FILE, without speech barge-in",
                        name,
                        self.sounds_dir,
                    )
                return None
            out.append(pcm)
        return out

    def path_of(self, name: str) -> Path | None:
        """``<sounds_dir>/<name>.wav`` or ``.sln``, never outside ``sounds_dir``."""
        if not name or name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
            return None
        for suffix in (".wav", ".sln"):
            path = self.sounds_dir / f"{name}{suffix}"
            if path.is_file():
                return path
        return None

    def _one(self, name: str) -> bytes | None:
        path = self.path_of(name)
        if path is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            return None
        cached = self._cache.get(path)
        if cached is not None and cached[0] == stat.st_mtime_ns:
            self._cache.move_to_end(path)
            return cached[1]
        if stat.st_size > _MAX_FILE_BYTES:
            return None
        pcm = self._decode(path)
        if pcm is None:
            return None
        self._cache[path] = (stat.st_mtime_ns, pcm)
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return pcm

    def _decode(self, path: Path) -> bytes | None:
        try:
            if path.suffix == ".sln":
                data = path.read_bytes()
                return data[: len(data) - len(data) % 2] or None
            with wave.open(str(path), "rb") as w:
                if (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (self.sample_rate, 2, 1):
                    return None
                return w.readframes(w.getnframes()) or None
        except (OSError, EOFError, wave.Error):
            return None
