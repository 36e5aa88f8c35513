"""The lab's one error: a real part (the Asterisk root, SIPp, PostgreSQL, Redis, Kannel, Chromium)
could not be provisioned or driven. Not an ``IvrError``: the lab is a harness beside the tests, and
the product never raises or catches it."""

from __future__ import annotations


class LabError(Exception):
    """The lab could not do its job; the message says which part and why."""
