"""Deterministic sound-file names for prompt texts.

Why derive the name from the text: flows hold the words (the same text is sent as an SMS or shown
in chat), and the voice channel must find the matching audio without a lookup table. A readable
slug helps an admin browsing the sounds directory; the hash keeps two texts with the same slug
apart and makes an edited text a new file, so a stale recording is never played.
"""

from __future__ import annotations

import functools
import hashlib
import re

_SLUG_WORDS = 6


def slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words[:_SLUG_WORDS]) or "prompt"


@functools.lru_cache(maxsize=4096)  # pure, and asked for every fragment of every menu on every call
def prompt_audio_name(text: str, prefix: str = "ivr") -> str:
    """``'Welcome to Example Power.'`` -> ``'ivr/welcome-to-example-power-1a2b3c4d'``.

    The result is what Asterisk's STREAM FILE takes: relative to its sounds directory, no extension.
    """
    digest = hashlib.sha1(" ".join(text.split()).encode()).hexdigest()[:8]
    return f"{prefix}/{slug(text)}-{digest}"
