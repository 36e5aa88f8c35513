"""The browser softphone's credentials as AMI actions: what the astdb sorcery wizard reads."""

from __future__ import annotations

import json

import pytest

from ivr.acd import sipcreds


def test_grant_is_a_dbput_of_the_auth_object_the_webrtc_endpoint_names() -> None:
    action = sipcreds.grant_action("agent1001", "A" * 32)
    assert action["Action"] == "DBPut"
    assert action["Family"] == "ivr_sip/auth"  # sorcery.conf: auth = astdb,ivr_sip
    assert action["Key"] == "agent1001-webrtc-auth"  # pjsip.conf: auth = agent1001-webrtc-auth
    assert json.loads(action["Val"]) == {"auth_type": "digest", "username": "agent1001-webrtc", "password": "A" * 32}


def test_revoke_deletes_the_same_key() -> None:
    assert sipcreds.revoke_action("agent1001") == {
        "Action": "DBDel",
        "Family": "ivr_sip/auth",
        "Key": "agent1001-webrtc-auth",
    }


@pytest.mark.parametrize("endpoint", ["", "agent 1001", "agent1001\r\nAction: Originate", "a/b", "x" * 57])
def test_endpoint_names_that_could_reach_another_key_or_header_are_refused(endpoint: str) -> None:
    with pytest.raises(ValueError):
        sipcreds.grant_action(endpoint, "A" * 32)
    with pytest.raises(ValueError):
        sipcreds.revoke_action(endpoint)


@pytest.mark.parametrize("password", ["short", "A" * 20 + '"', "A" * 20 + "\r\n", "A" * 129])
def test_passwords_are_long_and_need_no_quoting(password: str) -> None:
    with pytest.raises(ValueError):
        sipcreds.grant_action("agent1001", password)


def test_new_passwords_are_random_and_acceptable() -> None:
    first, second = sipcreds.new_password(), sipcreds.new_password()
    assert first != second and len(first) >= 32
    sipcreds.grant_action("agent1001", first)


def test_the_queues_ring_the_browser_endpoint_only_for_browser_agents() -> None:
    assert sipcreds.phone_endpoint({"endpoint": "agent1001", "phone": "browser"}) == "agent1001-webrtc"
    assert sipcreds.phone_endpoint({"endpoint": "agent1001", "phone": "sip"}) == "agent1001"
    assert sipcreds.phone_endpoint({"endpoint": "agent1001"}) == "agent1001"  # before migration 0014's column


def test_hkdf_gives_rfc_5869s_first_test_vector() -> None:
    prk = sipcreds.hkdf_extract(bytes.fromhex("000102030405060708090a0b0c"), bytes.fromhex("0b" * 22))
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
    okm = sipcreds.hkdf_expand(prk, bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_two_nodes_with_the_same_secret_derive_the_same_password_from_a_grant_that_does_not_contain_it() -> None:
    follower = sipcreds.SoftphoneKeys.from_secret("lab-ami-secret-0123")
    leader = sipcreds.SoftphoneKeys.from_secret("lab-ami-secret-0123")
    grant = follower.grant("agent1001", "AAAAAAAAAAAAAAAAAAAAAA")
    assert grant.to_args() == {
        "endpoint": "agent1001",
        "nonce": "AAAAAAAAAAAAAAAAAAAAAA",
        "tag": "f9a801e8d63a6d7ea3197419511ccf9e",
    }
    checked = leader.check(grant.to_args())
    password = leader.password(checked.endpoint, checked.nonce)
    assert password == "SqnaS0y7NcHG0VOBdmjcEkgbf2FGnDiS"
    assert password == follower.password("agent1001", "AAAAAAAAAAAAAAAAAAAAAA")
    assert password not in json.dumps(grant.to_args())
    sipcreds.grant_action("agent1001", password)  # a password Asterisk's auth object takes
    # another nonce, another endpoint: another password
    assert leader.password("agent1001", "BBBBBBBBBBBBBBBBBBBBBB") != password
    assert leader.password("agent1002", "AAAAAAAAAAAAAAAAAAAAAA") != password


def test_a_grant_tagged_with_another_secret_or_altered_on_the_way_is_refused() -> None:
    leader = sipcreds.SoftphoneKeys.from_secret("lab-ami-secret-0123")
    other = sipcreds.SoftphoneKeys.from_secret("another-secret")
    with pytest.raises(ValueError, match=r"same ami\.secret"):
        leader.check(other.grant("agent1001").to_args())
    good = leader.grant("agent1001").to_args()
    with pytest.raises(ValueError, match=r"same ami\.secret"):
        leader.check({**good, "endpoint": "agent1002"})  # bob's endpoint with ann's grant
    with pytest.raises(ValueError, match="nonce"):
        leader.check({**good, "nonce": "short"})
    with pytest.raises(ValueError, match="endpoint"):
        leader.check({**good, "endpoint": "agent1001\r\nAction: Originate"})
    assert leader.check(good).nonce == good["nonce"]


def test_clearing_is_a_dbdeltree_of_the_family() -> None:
    assert sipcreds.clear_action() == {"Action": "DBDelTree", "Family": "ivr_sip/auth"}
