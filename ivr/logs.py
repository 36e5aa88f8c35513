"""Logging with the call's id on every line.

Why a contextvar: each FastAGI connection runs in its own asyncio task, and a task copies the
context it was created in, so setting ``call_id`` once per connection tags every log line of that
call (in any module the call passes through) without threading an id through every function.
The filter sits on our handler, so it also tags records of third-party loggers.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Final

from ivr.errors import ConfigError

__all__ = ["FORMAT", "CallIdFilter", "call_id", "setup_logging"]

#: The Asterisk uniqueid of the call the current task serves; "-" outside a call.
call_id: ContextVar[str] = ContextVar("call_id", default="-")

#: e.g. ``2026-11-25 21:00:00,123 INFO ivr.agi [1732560000.12] caller hung up``
FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [%(call_id)s] %(message)s"


class CallIdFilter(logging.Filter):
    """Puts ``call_id`` on every record (keeps one given explicitly via ``extra=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_id"):
            record.call_id = call_id.get()
        return True


class _IvrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marker type so ``setup_logging`` can replace its own handler when called again."""


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` (DEBUG, INFO, WARNING, ERROR) with the call id on each line."""
    numeric = logging.getLevelName(level.strip().upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _IvrHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _IvrHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(CallIdFilter())
    root.addHandler(handler)
    root.setLevel(numeric)
