from __future__ import annotations

import pytest

from ivr.web.agents_auth import WeakPassword, hash_password, same_token, token_hash, verify_password


def test_scrypt_hash_verifies_only_the_right_password_and_is_salted() -> None:
    first = hash_password("correct horse")
    assert first.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", first)
    assert not verify_password("correct horsE", first)
    assert hash_password("correct horse") != first
    assert not verify_password("x", "garbage") and not verify_password("x", "md5$1$2$3$4$5")


def test_short_passwords_are_refused() -> None:
    with pytest.raises(WeakPassword):
        hash_password("short")


def test_tokens() -> None:
    assert len(token_hash("abc")) == 64 and token_hash("abc") != "abc"
    assert same_token("a", "a") and not same_token("a", "b") and not same_token(None, "a") and not same_token("", "")
