"""The test lab: real Asterisk 22, SIPp callers and softphones, PostgreSQL, Redis, Kannel and
Chromium for the tests, the demo and the benchmarks.

It lives beside the tests, not in the product: it drives a checkout (the Asterisk root is built
from ``asterisk-config/``, the controller runs from the same tree) and is not in the wheel.
"""
