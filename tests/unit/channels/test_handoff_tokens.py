"""Continuation tokens with literal inputs: each security property has its test here.

signed/forged -> test_forged_token_is_refused, tampered -> test_every_single_byte_change_is_refused,
expiring -> test_expiry_is_inside_the_signature, unguessable -> test_ids_are_random_and_wide,
bound to the customer -> test_token_is_bound_to_its_customer, no personal data ->
test_token_carries_no_personal_data, no default secret -> test_a_secret_is_required.
Single use is enforced by the database: tests/integration/test_handoff_store.py.
"""

from __future__ import annotations

import base64

import pytest

from ivr.channels.handoff import (
    TOKEN_BYTES,
    TokenCodec,
    TokenRejected,
    link_message,
    new_continuation_id,
    new_session,
    session_hash,
)

SECRET = "test-secret-0123456789"
CID = "00112233445566778899aabbccddeeff"
EXPIRES = 1800000000
#: The token for (SECRET, CID, "cust-1", EXPIRES): a fixed vector, so the format cannot drift silently.
TOKEN = "AQARIjNEVWZ3iJmqu8zd7v9rSdIALntX3fZ96RDP1bf2fh24X_OygNCsKS-c"


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def reason(codec: TokenCodec, token: str, now: float = EXPIRES - 60) -> str:
    with pytest.raises(TokenRejected) as info:
        codec.verify(token, now)
    return info.value.reason


def test_known_vector_round_trips() -> None:
    codec = TokenCodec(SECRET)
    assert codec.issue(CID, "cust-1", EXPIRES) == TOKEN
    claim = codec.verify(TOKEN, EXPIRES - 1)
    assert claim.continuation_id == CID and claim.expires_at == EXPIRES
    assert claim.customer_tag == bytes.fromhex("2e7b57ddf67de910")
    assert len(raw(TOKEN)) == TOKEN_BYTES == 45


def test_forged_token_is_refused() -> None:
    forged = TokenCodec("another-secret-0123456789").issue(CID, "cust-1", EXPIRES)
    assert reason(TokenCodec(SECRET), forged) == "forged"


def test_every_single_byte_change_is_refused() -> None:
    codec = TokenCodec(SECRET)
    original = raw(TOKEN)
    for i in range(len(original)):
        for flip in (0x01, 0x80):
            changed = bytearray(original)
            changed[i] ^= flip
            token = base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
            assert reason(codec, token) in ("forged", "malformed"), i


def test_malformed_tokens() -> None:
    codec = TokenCodec(SECRET)
    for token in ("", "x", "not-a-token", TOKEN[:-1], TOKEN + "A", "é" * 60, TOKEN + "==", "A" * 500):
        assert reason(codec, token) == "malformed", token


def test_expiry_is_inside_the_signature() -> None:
    codec = TokenCodec(SECRET)
    assert reason(codec, TOKEN, now=EXPIRES) == "expired"
    assert reason(codec, TOKEN, now=EXPIRES + 86400) == "expired"
    assert codec.verify(TOKEN, EXPIRES - 0.5).continuation_id == CID
    # moving the expiry forward (bytes 17..20) breaks the signature
    changed = bytearray(raw(TOKEN))
    changed[17:21] = (EXPIRES + 86400).to_bytes(4, "big")
    token = base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("=")
    assert reason(codec, token, now=EXPIRES + 10) == "forged"


def test_token_is_bound_to_its_customer() -> None:
    codec = TokenCodec(SECRET)
    claim = codec.verify(TOKEN, EXPIRES - 1)
    assert codec.bound_to(claim, "cust-1")
    assert not codec.bound_to(claim, "cust-2")
    assert not codec.bound_to(claim, None)
    # the tag is keyed: the same customer under another secret has another tag
    assert TokenCodec("another-secret-0123456789").customer_tag("cust-1") != codec.customer_tag("cust-1")


def test_token_carries_no_personal_data() -> None:
    codec = TokenCodec(SECRET)
    token = codec.issue(CID, "+15551230001", EXPIRES)
    data = raw(token)
    assert b"+1555" not in data and b"5551230001" not in data
    assert data[0] == 1 and data[1:17] == bytes.fromhex(CID)  # version, random id, then expiry, tag, MAC
    assert "5551230001" not in token


def test_ids_are_random_and_wide() -> None:
    ids = {new_continuation_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 for i in ids)
    cookie, hashed = new_session()
    assert len(cookie) >= 43 and hashed == session_hash(cookie) and cookie not in hashed


def test_a_secret_is_required() -> None:
    with pytest.raises(ValueError):
        TokenCodec("")
    with pytest.raises(ValueError):
        TokenCodec("short")


def test_link_message() -> None:
    assert link_message("Continue your payment here.", "https://x.example/", "T0K") == (
        "Continue your payment here: https://x.example/c/T0K"
    )
    assert link_message(None, "http://h", "T") == "Continue where you left off: http://h/c/T"
