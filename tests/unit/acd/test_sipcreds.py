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
