from __future__ import annotations

import pytest

from ivr.ami import actions


def test_queue_actions() -> None:
    assert actions.queue_add("billing", "PJSIP/agent1001", penalty=1, member_name="Ann") == {
        "Action": "QueueAdd",
        "Queue": "billing",
        "Interface": "PJSIP/agent1001",
        "Penalty": "1",
        "Paused": "false",
        "MemberName": "Ann",
    }
    assert actions.queue_pause("PJSIP/a", True, reason="lunch") == {
        "Action": "QueuePause",
        "Interface": "PJSIP/a",
        "Paused": "true",
        "Reason": "lunch",
    }
    assert actions.queue_remove("q", "PJSIP/a")["Action"] == "QueueRemove"


def test_originate_carries_variables_and_refuses_header_injection() -> None:
    a = actions.originate(
        "PJSIP/+15551230001@trunk", context="ivr-callback", exten="s", variables={"IVR_CALLBACK_ID": "cb1"}
    )
    assert a["Variable"] == "IVR_CALLBACK_ID=cb1" and a["Async"] == "true"
    with pytest.raises(ValueError, match="line break"):
        actions.queue_pause("PJSIP/a\r\nAction: Originate", True)
    with pytest.raises(ValueError):
        actions.originate("x", context="c", exten="s", variables={"A": "1,B=2"})


def test_transfer_actions() -> None:
    from ivr.ami import actions as a

    assert a.blind_transfer("PJSIP/agent1001-1", context="ivr-transfer", exten="queue") == {
        "Action": "BlindTransfer",
        "Channel": "PJSIP/agent1001-1",
        "Context": "ivr-transfer",
        "Exten": "queue",
    }
    both = a.redirect_both(
        "PJSIP/trunk-1",
        context="ivr-transfer-hold",
        exten="s",
        extra_channel="PJSIP/agent1001-1",
        extra_context="ivr-transfer",
        extra_exten="consult-agent",
    )
    assert both["Channel"] == "PJSIP/trunk-1" and both["Exten"] == "s" and both["ExtraExten"] == "consult-agent"
    assert both["ExtraChannel"] == "PJSIP/agent1001-1" and both["ExtraPriority"] == "1"
    assert a.bridge("PJSIP/trunk-1", "PJSIP/agent1002-2") == {
        "Action": "Bridge",
        "Channel1": "PJSIP/trunk-1",
        "Channel2": "PJSIP/agent1002-2",
        "Tone": "no",
    }
    assert a.setvar("PJSIP/trunk-1", "__IVR_XFER_ID", "t1")["Variable"] == "__IVR_XFER_ID"
    assert a.hangup("PJSIP/agent1001-1")["Cause"] == "16"
    with pytest.raises(ValueError):
        a.setvar("PJSIP/trunk-1", "IVR_XFER_QUEUE", "support\r\nAction: Hangup")
