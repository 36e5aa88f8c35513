"""One user of the lab at a time: Asterisk owns ports 5060/5038 and the controller 4573.

Test sessions, benchmarks and the demo take this lock before they start or use the lab, so two
runs on one machine queue instead of stopping each other's Asterisk in the middle of a call.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LOCK = Path("/var/cache/ivr-lab/state/session.lock")
#: Set to "1" by a lab user that already holds the lock for a child it runs (a test session
#: running the demo as a subprocess): the child must not wait for a lock its parent will not free.
HELD_BY_PARENT = "IVR_LAB_LOCK_HELD"


@contextlib.contextmanager
def lab_session_lock(path: Path = LOCK) -> Iterator[None]:
    if os.environ.get(HELD_BY_PARENT) == "1":
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another lab user to release {path} ...", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
