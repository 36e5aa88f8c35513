"""How many wrong passwords the desktop's login takes, per user name and per client address. Pure.

Why two keys: a name alone can be guessed from many addresses, and one address can spray many
names; each has its own budget (``Limit``). Why a sliding window and a lock of fixed length:

* a key is locked when its ``max_failures``-th failure lands within ``window`` seconds;
* the lock lasts ``lockout`` seconds from then and its count starts again at zero;
* attempts while locked are refused *without* checking the password and are not counted, so
  they neither extend the lock nor teach the attacker anything.

So no lock outlasts ``lockout``: someone trickling wrong passwords at a named agent can at most
lock them for ``lockout`` after every ``max_failures`` tries, and the agent with the right password
gets in as soon as the lock ends (a stale lock that never resets is a denial of service on a named
agent, at one try a minute). Failures older than ``window`` are forgotten.

The table is bounded: keys past their window with no lock are dropped, and past ``max_keys`` the
least recently failed keys go. Only bounded names reach it (the caller refuses longer ones), so a
flood of failed logins costs a fixed amount of memory.

The clock is injected (``now`` on every call): the tests use literal times.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

MAX_KEYS = 10_000


@dataclass(frozen=True)
class Limit:
    max_failures: int
    window: float
    lockout: float

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window <= 0 or self.lockout <= 0:
            raise ValueError(f"login limits need at least 1 failure and positive times, not {self}")


@dataclass
class _Key:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginLimiter:
    def __init__(self, *, per_name: Limit, per_address: Limit, max_keys: int = MAX_KEYS) -> None:
        self.limits = {"name": per_name, "address": per_address}
        self.max_keys = max_keys
        self._keys: OrderedDict[tuple[str, str], _Key] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def locked_for(self, name: str, address: str, now: float) -> float:
        """Seconds until an attempt for ``name`` from ``address`` may be checked; 0 = go ahead."""
        wait = 0.0
        for key in self._pair(name, address):
            entry = self._keys.get(key)
            if entry is not None:
                wait = max(wait, entry.locked_until - now)
        return wait

    def failed(self, name: str, address: str, now: float) -> list[str]:
        """A wrong password (or unknown name) for an attempt that ``locked_for`` let through.
        Returns the kinds of key ("name", "address") this failure locked."""
        locked: list[str] = []
        for key in self._pair(name, address):
            limit = self.limits[key[0]]
            entry = self._keys.pop(key, None) or _Key()
            self._keys[key] = entry  # most recently failed last: the eviction order
            entry.failures = [t for t in entry.failures if now - t < limit.window]
            entry.failures.append(now)
            if len(entry.failures) >= limit.max_failures:
                entry.locked_until = now + limit.lockout
                entry.failures.clear()
                locked.append(key[0])
        self._prune(now)
        return locked

    def succeeded(self, name: str) -> None:
        """The right password: the name's failures are forgotten (the address keeps its own)."""
        self._keys.pop(("name", name), None)

    def _pair(self, name: str, address: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return ("name", name), ("address", address)

    def _prune(self, now: float) -> None:
        """Drop stale keys from the front (least recently failed first, so this stops at the first
        live one: amortised O(1) per failure), then the oldest beyond ``max_keys``."""
        while self._keys:
            key, entry = next(iter(self._keys.items()))
            window = self.limits[key[0]].window
            if entry.locked_until > now or any(now - t < window for t in entry.failures):
                break
            del self._keys[key]
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
