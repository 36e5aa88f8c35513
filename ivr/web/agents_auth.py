"""Agents' desktop authentication: scrypt password hashes, session tokens, CSRF tokens. Pure helpers.

* **Passwords**: scrypt (memory-hard KDF, in the standard library), N=2^14, r=8, p=1, 16-byte
  random salt, 32-byte key; stored as ``scrypt$N$r$p$salt$key`` (base64), so the cost can be raised
  later and old hashes still verify. Comparison in constant time.
* **Sessions**: a 32-byte random token in an ``HttpOnly; SameSite=Strict`` cookie; the database
  keeps only its SHA-256, so a stolen database cannot be replayed as a login.
* **CSRF**: every state-changing request carries the session's CSRF token in ``X-CSRF-Token``
  (and the websocket URL, whose Origin is checked too). Before login there is no session: the
  login form uses a double-submit token (cookie + form field must match).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
KEY_LEN = 32
MIN_PASSWORD = 8
#: Longer ones are refused at login before anything is looked up, logged or remembered.
MAX_USERNAME = 64
#: Longer ones cannot be set, so at login they are wrong without hashing them.
MAX_PASSWORD = 1024


class WeakPassword(ValueError):
    """A password too short (or too long) to be set."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    if len(password) < MIN_PASSWORD:
        raise WeakPassword(f"passwords need at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise WeakPassword(f"passwords have at most {MAX_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_LEN, maxmem=64 * 1024 * 1024)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


#: Verifying against this costs the same as a real hash: an unknown user name takes as long to
#: refuse as a wrong password, so user names cannot be enumerated by timing.
DUMMY_HASH = hash_password("not-a-real-password-" + secrets.token_hex(8))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
