"""AMI actions the product sends, as plain dicts. Pure: building them is tested without Asterisk.

Why builders: header names and value spellings differ subtly between actions (``Paused: true``,
``Interface`` vs ``Channel``, ``Variable: A=1,B=2`` for Originate), and a typo in a dict literal is
an AMI error at run time. Each builder validates what goes into the CRLF-separated text protocol
(no CR/LF may reach the wire: that would inject a header).
"""

from __future__ import annotations

from collections.abc import Mapping

Action = dict[str, str]


def _clean(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{name} contains a line break")
    return value


def queue_add(queue: str, interface: str, *, penalty: int = 0, member_name: str = "", paused: bool = False) -> Action:
    action = {
        "Action": "QueueAdd",
        "Queue": _clean("queue", queue),
        "Interface": _clean("interface", interface),
        "Penalty": str(int(penalty)),
        "Paused": "true" if paused else "false",
    }
    if member_name:
        action["MemberName"] = _clean("member_name", member_name)
    return action


def queue_remove(queue: str, interface: str) -> Action:
    return {"Action": "QueueRemove", "Queue": _clean("queue", queue), "Interface": _clean("interface", interface)}


def queue_pause(interface: str, paused: bool, *, reason: str = "", queue: str = "") -> Action:
    """Pause/unpause a member in every queue (or only ``queue``)."""
    action = {
        "Action": "QueuePause",
        "Interface": _clean("interface", interface),
        "Paused": "true" if paused else "false",
    }
    if queue:
        action["Queue"] = _clean("queue", queue)
    if reason:
        action["Reason"] = _clean("reason", reason)
    return action


def queue_penalty(interface: str, penalty: int, *, queue: str = "") -> Action:
    action = {"Action": "QueuePenalty", "Interface": _clean("interface", interface), "Penalty": str(int(penalty))}
    if queue:
        action["Queue"] = _clean("queue", queue)
    return action


def queue_status(queue: str = "") -> Action:
    return {"Action": "QueueStatus", **({"Queue": _clean("queue", queue)} if queue else {})}


def originate(
    channel: str,
    *,
    context: str,
    exten: str,
    priority: int = 1,
    caller_id: str = "",
    timeout_ms: int = 30000,
    variables: Mapping[str, str] | None = None,
    action_id: str = "",
    channel_id: str = "",
) -> Action:
    """Originate asynchronously (the result comes as an OriginateResponse event with ``action_id``).
    ``channel_id``: the uniqueid the new channel gets, so whoever lists Asterisk's channels later
    (another node, after this one died) can tell what it was dialled for."""
    action = {
        "Action": "Originate",
        "Channel": _clean("channel", channel),
        "Context": _clean("context", context),
        "Exten": _clean("exten", exten),
        "Priority": str(int(priority)),
        "Timeout": str(int(timeout_ms)),
        "Async": "true",
    }
    if caller_id:
        action["CallerID"] = _clean("caller_id", caller_id)
    if variables:
        for name, value in variables.items():
            if "," in value or "=" in name:
                raise ValueError(f"originate variable {name}: ',' and '=' cannot be carried")
        action["Variable"] = ",".join(f"{_clean('variable', k)}={_clean('variable', v)}" for k, v in variables.items())
    if action_id:
        action["ActionID"] = _clean("action_id", action_id)
    if channel_id:
        action["ChannelId"] = _clean("channel_id", channel_id)
    return action


def redirect(channel: str, *, context: str, exten: str, priority: int = 1) -> Action:
    return {
        "Action": "Redirect",
        "Channel": _clean("channel", channel),
        "Context": _clean("context", context),
        "Exten": _clean("exten", exten),
        "Priority": str(int(priority)),
    }


def setvar(channel: str, variable: str, value: str) -> Action:
    """Set a channel variable (``__NAME`` is inherited by the channels this one creates)."""
    return {
        "Action": "Setvar",
        "Channel": _clean("channel", channel),
        "Variable": _clean("variable", variable),
        "Value": _clean("value", value),
    }


def blind_transfer(channel: str, *, context: str, exten: str) -> Action:
    """Send whoever is bridged with ``channel`` (the transferer: the agent's leg) to exten@context;
    the transferer's leg is hung up. app_queue logs it as BLINDTRANSFER."""
    return {
        "Action": "BlindTransfer",
        "Channel": _clean("channel", channel),
        "Context": _clean("context", context),
        "Exten": _clean("exten", exten),
    }


def redirect_both(
    channel: str, *, context: str, exten: str, extra_channel: str, extra_context: str, extra_exten: str
) -> Action:
    """Redirect two bridged channels at once, each to its own place (neither is hung up when the
    bridge between them dissolves, as the one left alone would be after a single Redirect)."""
    return {
        **redirect(channel, context=context, exten=exten),
        "ExtraChannel": _clean("extra_channel", extra_channel),
        "ExtraContext": _clean("extra_context", extra_context),
        "ExtraExten": _clean("extra_exten", extra_exten),
        "ExtraPriority": "1",
    }


def bridge(channel1: str, channel2: str) -> Action:
    """Bridge two channels, taking each out of whatever application it runs (MusicOnHold, Dial)."""
    return {
        "Action": "Bridge",
        "Channel1": _clean("channel1", channel1),
        "Channel2": _clean("channel2", channel2),
        "Tone": "no",
    }


def hangup(channel: str, *, cause: int = 16) -> Action:
    return {"Action": "Hangup", "Channel": _clean("channel", channel), "Cause": str(int(cause))}
