"""Caller ids to E.164 (``+<country code><number>``), the form phone identities are stored in.

Why here and pure: a customer is matched by caller id, and the same person must match whether
the carrier sent ``+44 20 7946 0000``, ``00442079460000`` or, for a national call, ``020 7946 0000``.
National numbers need the trunk's country code (setting ``phone.country_code``); without it they
are kept as their digits, which still matches the same caller on the same trunk.
"""

from __future__ import annotations

import re

WITHHELD = frozenset({"unknown", "anonymous", "restricted", "private", "unavailable", "withheld"})
_SEPARATORS = re.compile(r"[\s\-./()]")
MAX_DIGITS = 15  # E.164


def to_e164(raw: str | None, country_code: str = "") -> str | None:
    """The caller id in E.164, or None when it is withheld or not a phone number at all."""
    text = _SEPARATORS.sub("", (raw or "").strip())
    if not text or text.lower() in WITHHELD:
        return None
    if text.startswith("+"):
        digits = text[1:]
        if not digits.isdigit():
            return None
        return "+" + digits if len(digits) <= MAX_DIGITS else None
    if not text.isdigit():
        return None
    cc = country_code.lstrip("+")
    if text.startswith("00"):  # international prefix used outside North America
        international = text[2:]
    elif cc == "1" and text.startswith("011"):  # North America's international prefix
        international = text[3:]
    elif not cc:
        return text if len(text) <= MAX_DIGITS else None
    elif cc == "1":  # NANP: 10 digits, or 11 with the leading 1
        international = text if (len(text) == 11 and text.startswith("1")) else cc + text
    else:  # most other plans: a single trunk prefix 0 before the national number
        international = cc + (text[1:] if text.startswith("0") else text)
    if not international or len(international) > MAX_DIGITS:
        return None
    return "+" + international
