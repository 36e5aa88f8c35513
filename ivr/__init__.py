"""Telephony-first omnichannel IVR controller for Asterisk.

The package is laid out by architecture: ``agi`` speaks FastAGI, ``ami`` the Manager Interface,
``flow`` is the pure flow engine, ``channels`` translate flow commands into a medium, ``store``
persists journeys, ``lab`` drives a real Asterisk and SIPp for tests, the demo and benchmarks.
"""

__version__ = "0.1.0"
