"""Login limits per user name and per address (pure, literal times): locks end, counts decay."""

from __future__ import annotations

import pytest

from ivr.web.login_limits import Limit, LoginLimiter

NAME = Limit(max_failures=5, window=300.0, lockout=60.0)
ADDRESS = Limit(max_failures=20, window=300.0, lockout=60.0)


def limiter(max_keys: int = 10_000) -> LoginLimiter:
    return LoginLimiter(per_name=NAME, per_address=ADDRESS, max_keys=max_keys)


def attempt(lim: LoginLimiter, name: str, address: str, now: float, *, right: bool = False) -> str:
    """What the login handler does: refused while locked, else the password decides."""
    if lim.locked_for(name, address, now) > 0:
        return "locked"
    if right:
        lim.succeeded(name)
        return "in"
    lim.failed(name, address, now)
    return "wrong"


def test_the_fifth_failure_locks_the_name_for_the_lockout_and_no_longer() -> None:
    lim = limiter()
    for t in (0, 1, 2, 3):
        assert lim.failed("bob", "10.0.0.9", t) == []
    assert lim.locked_for("bob", "10.0.0.1", 3.5) == 0
    assert lim.failed("bob", "10.0.0.9", 4) == ["name"]
    assert lim.locked_for("bob", "10.0.0.1", 4) == 60  # from any address: the name is locked
    assert lim.locked_for("ann", "10.0.0.9", 4) == 0  # the address is not (yet)
    for t in range(5, 64, 5):  # the attacker keeps trying: refused, not counted, not extended
        assert attempt(lim, "bob", "10.0.0.9", t) == "locked"
    assert lim.locked_for("bob", "10.0.0.1", 63.9) == pytest.approx(0.1)
    assert attempt(lim, "bob", "10.0.0.1", 64, right=True) == "in"  # the real agent gets in


def test_after_a_lock_one_wrong_try_a_minute_never_locks_again() -> None:
    """The old table kept the count: after the first lock, each wrong try renewed it for ever."""
    lim = limiter()
    for t in range(5):
        lim.failed("bob", "10.0.0.9", t)
    outcomes = [attempt(lim, "bob", "10.0.0.9", 64 + 60 * i) for i in range(120)]  # two hours
    assert outcomes == ["wrong"] * 120
    assert attempt(lim, "bob", "10.0.0.1", 64 + 60 * 120 + 1, right=True) == "in"


def test_failures_older_than_the_window_are_forgotten() -> None:
    lim = limiter()
    for t in (0, 10, 20, 30):
        lim.failed("bob", "10.0.0.9", t)
    assert lim.failed("bob", "10.0.0.9", 305) == []  # 0 is out of the window: four in it
    assert lim.failed("bob", "10.0.0.9", 306) == ["name"]


def test_a_trickle_of_wrong_tries_never_keeps_the_agent_out_longer_than_the_lockout() -> None:
    lim = limiter()
    locked_since: float | None = None
    longest = 0.0
    logins = 0
    for step in range(2 * 3600):  # two hours, one second a step
        t = float(step)
        if step % 15 == 0:  # the attacker: a wrong password every 15 s, from its own address
            attempt(lim, "bob", "203.0.113.7", t)
        if step % 10 == 5:  # the real agent tries every 10 s from the centre's address
            if attempt(lim, "bob", "10.0.0.1", t, right=True) == "locked":
                locked_since = t if locked_since is None else locked_since
                longest = max(longest, t - locked_since)
            else:
                locked_since = None
                logins += 1
    assert longest <= NAME.lockout
    assert logins > 300  # locked only for one minute after every five wrong tries


def test_one_address_spraying_names_is_locked_as_an_address() -> None:
    lim = limiter()
    for i in range(19):
        assert lim.failed(f"user{i}", "203.0.113.7", i) == []
    assert lim.failed("user19", "203.0.113.7", 19) == ["address"]
    assert attempt(lim, "ann", "203.0.113.7", 20, right=True) == "locked"  # any name from there
    assert attempt(lim, "ann", "10.0.0.1", 20, right=True) == "in"  # ann from her own desk
    assert attempt(lim, "ann", "203.0.113.7", 79, right=True) == "in"


def test_the_table_stays_bounded_under_a_flood_and_forgets_stale_keys() -> None:
    lim = limiter(max_keys=1000)
    for i in range(50_000):
        lim.failed(f"user{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", i / 1000)
        assert len(lim) <= 1000
    lim.failed("late", "192.0.2.1", 10_000)  # everything else is past its window and unlocked
    assert len(lim) == 2


def test_limits_must_be_usable() -> None:
    with pytest.raises(ValueError):
        Limit(max_failures=0, window=300, lockout=60)
