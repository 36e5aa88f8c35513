"""Channel variable names shared by the controller and the shipped dialplan, defined once.

Why one module: a name is an interface between two programs (this controller and
``asterisk-config/extensions.conf``), so a typo on either side silently sends calls to the
fallback. Every module that sets or reads a channel variable takes its name from here, and a unit
test compares :data:`DIALPLAN` with the names the shipped ``extensions.conf`` reads and sets (both
ways), so the two cannot drift.

Groups:

* the controller's decision, read by ``[ivr-after-agi]`` after ``AGI()`` returns
  (:data:`ACTION`, :data:`QUEUE`, :data:`QUEUE_TIMEOUT`) and by app_queue itself
  (:data:`QUEUE_PRIO`);
* journey variables, set with two leading underscores (:func:`inherited`) so the agent's channel
  inherits them: the screen pop and the agent's phone see them, and ``manager.conf``'s
  ``channelvars`` puts some into every AMI event;
* the dialplan's own (:data:`AGI_URL`, :data:`FALLBACK_QUEUE`, :data:`FALLBACK`,
  :data:`FALLBACK_REASON`, :data:`DNIS`): the controller never sets them, but they are part of the
  same contract and documented here.
"""

from __future__ import annotations

from typing import Final

# ------------------------------------------------------------------ the controller's decision
#: ``queue`` | ``hangup`` | ``fallback``; empty or anything else means fallback in the dialplan.
ACTION: Final = "IVR_ACTION"
#: Queue name for ``queue`` (must exist in queues.conf).
QUEUE: Final = "IVR_QUEUE"
#: Seconds before Queue() gives up (empty: wait for ever).
QUEUE_TIMEOUT: Final = "IVR_QUEUE_TIMEOUT"
#: Read by app_queue itself, not by the dialplan text: higher is answered first.
QUEUE_PRIO: Final = "QUEUE_PRIO"
#: Where a menu's Read() leaves the caller's key (not inherited: it never reaches an agent's channel).
MENU_KEY: Final = "IVR_MENU_KEY"
#: Click-to-call ([ivr-outbound], set on the agent's leg by ivr.acd.outbound): the trunk dial string
#: of the customer's number, and the caller id the customer sees.
OUTBOUND_DIAL: Final = "IVR_OUTBOUND_DIAL"
OUTBOUND_CALLERID: Final = "IVR_OUTBOUND_CALLERID"

# ------------------------------------------------------------------ journey variables (inherited)
JOURNEY_ID: Final = "IVR_JOURNEY_ID"
FLOW: Final = "IVR_FLOW"
STEP: Final = "IVR_STEP"
PATH: Final = "IVR_PATH"
INTENT: Final = "IVR_INTENT"
SKILL: Final = "IVR_SKILL"
#: Prefix of a carried slot: ``IVR_SLOT_ACCOUNT_NUMBER``.
SLOT_PREFIX: Final = "IVR_SLOT_"
#: Set on a callback's channel: the ticket it answers.
CALLBACK_ID: Final = "IVR_CALLBACK_ID"
#: Every journey variable starts with this (callbacks copy them from the original call).
JOURNEY_PREFIX: Final = "IVR_"

# ------------------------------------------------------------------ agent transfers ([ivr-transfer])
#: The transfer's id, inherited (``__``) so the target's leg reports it in ``UserEvent(IvrTransfer)``.
XFER_ID: Final = "IVR_XFER_ID"
#: Queue a transferred caller joins (the target queue, or their own when a dial fails).
XFER_QUEUE: Final = "IVR_XFER_QUEUE"
#: Queue()'s position argument: behind the callers who first joined before them (empty: the end).
XFER_POSITION: Final = "IVR_XFER_POSITION"
#: The target agent's PJSIP endpoint.
XFER_ENDPOINT: Final = "IVR_XFER_ENDPOINT"
#: The dial string of an external number (``transfer.dial`` with the number in it).
XFER_DIAL: Final = "IVR_XFER_DIAL"
#: Caller id presented to an external number (``transfer.caller_id``; empty: the caller's own).
XFER_CALLERID: Final = "IVR_XFER_CALLERID"
#: Seconds the target rings.
XFER_RING: Final = "IVR_XFER_RING"

# ------------------------------------------------------------------ the dialplan's own
AGI_URL: Final = "IVR_AGI"
#: further controller nodes ([ivr-agi] tries them in order when the one before is unreachable)
AGI_STANDBY: Final = "IVR_AGI_STANDBY"
FALLBACK_QUEUE: Final = "IVR_FALLBACK_QUEUE"
FALLBACK: Final = "IVR_FALLBACK"
FALLBACK_REASON: Final = "IVR_FALLBACK_REASON"
DNIS: Final = "IVR_DNIS"

#: Every name ``extensions.conf`` reads or sets besides Asterisk's own (a unit test checks both ways).
#: :data:`QUEUE_PRIO` is not among them: app_queue reads it, the dialplan text never names it.
DIALPLAN: Final = frozenset(
    {
        ACTION,
        QUEUE,
        QUEUE_TIMEOUT,
        JOURNEY_ID,
        CALLBACK_ID,
        XFER_ID,
        XFER_QUEUE,
        XFER_POSITION,
        XFER_ENDPOINT,
        XFER_DIAL,
        XFER_CALLERID,
        XFER_RING,
        OUTBOUND_DIAL,
        OUTBOUND_CALLERID,
        AGI_URL,
        AGI_STANDBY,
        FALLBACK_QUEUE,
        FALLBACK,
        FALLBACK_REASON,
        DNIS,
    }
)


def inherited(name: str) -> str:
    """``__NAME``: set this way, a variable is copied to every channel the call creates (the agent's)."""
    return f"__{name}"


def slot(name: str) -> str:
    """The journey variable carrying slot ``name`` to the agent: ``IVR_SLOT_<NAME>``."""
    return f"{SLOT_PREFIX}{name.upper()}"
