"""SIP credentials for agents' browser softphones, one random password per desktop login.

Why per login and not a password in a file: a browser softphone's password would otherwise sit in
the page, typed by the agent or stored by the browser, and work for ever from anywhere. Here the
controller makes a random one when the desktop asks for it (``POST /desktop/api/softphone``),
hands it to that browser session only, and deletes it at logout, when the session is revoked
(``ivr agents passwd|disable``) or expires. It is never written to our database nor logged.

Where Asterisk finds it: the endpoint ``<endpoint>-webrtc`` (pjsip.conf) names the auth object
``<endpoint>-webrtc-auth``, which exists in no file. ``sorcery.conf`` adds Asterisk's astdb as a
second source of auth objects (family ``ivr_sip/auth``); AMI ``DBPut`` creates the object as the
astdb sorcery wizard stores it (a JSON object of its fields) and ``DBDel`` removes it. The wizard
reads astdb on every lookup, so a REGISTER is accepted (or refused) from the moment the action
returns, without a reload. Measured on the lab's Asterisk 22 (one grant, one revoke, through the
controller's AMI client): DBPut 14 ms the first time, DBDel 1.3 ms. Not chosen, and not measured:
a generated include needs a ``pjsip reload`` that re-reads every PJSIP object, and ARI's dynamic
sorcery objects need ARI switched on (modules.conf keeps it off). Only the ACD leader holds AMI, so the
desktop's node asks it (``AcdDesk`` ops ``sip.grant`` and ``sip.revoke``).

astdb is a file in Asterisk's spool, so a credential outlives an Asterisk restart (the browser
re-registers with it) and also a controller that dies without revoking: it then lasts until the
agent's next sign-in replaces it or their logout deletes it. One auth object per endpoint: each
new request replaces the password, so of two tabs the last one to ask keeps registering.

Each endpoint has its own auth object whose user name is the endpoint's name, so a browser that
presents another agent's credentials for its endpoint is refused by Asterisk's digest check.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from ivr.ami.actions import Action

#: the astdb family the astdb sorcery wizard reads res_pjsip's auth objects from (sorcery.conf)
FAMILY = "ivr_sip/auth"
BROWSER_SUFFIX = "-webrtc"
_ENDPOINT = re.compile(r"^[A-Za-z0-9_.-]{1,56}$")


def browser_endpoint(endpoint: str) -> str:
    """The WebRTC endpoint of an agent's SIP endpoint (pjsip.conf's ``agentNNNN-webrtc``)."""
    if not _ENDPOINT.match(endpoint):
        raise ValueError(f"not a PJSIP endpoint name: {endpoint!r}")
    return endpoint + BROWSER_SUFFIX


def phone_endpoint(agent: dict[str, Any]) -> str:
    """The endpoint the queues ring for this agent: the browser's when their phone is ``browser``."""
    endpoint = str(agent["endpoint"])
    return browser_endpoint(endpoint) if agent.get("phone") == "browser" else endpoint


def auth_id(endpoint: str) -> str:
    """The auth object the browser endpoint of ``endpoint`` names (``auth =`` in pjsip.conf)."""
    return browser_endpoint(endpoint) + "-auth"


def new_password() -> str:
    """192 random bits, URL-safe: nothing in it needs quoting in a digest or a JSON value."""
    return secrets.token_urlsafe(24)


def grant_action(endpoint: str, password: str) -> Action:
    """AMI DBPut creating the auth object of ``endpoint``'s browser phone with ``password``."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", password):
        raise ValueError("a browser softphone password is 16-128 URL-safe characters")
    user = browser_endpoint(endpoint)
    # json.dumps escapes any line break: nothing here can end the AMI header early
    value = json.dumps({"auth_type": "digest", "username": user, "password": password}, separators=(",", ":"))
    return {"Action": "DBPut", "Family": FAMILY, "Key": auth_id(endpoint), "Val": value}


def revoke_action(endpoint: str) -> Action:
    """AMI DBDel removing the auth object: no REGISTER (nor call) of that browser endpoint passes."""
    return {"Action": "DBDel", "Family": FAMILY, "Key": auth_id(endpoint)}
