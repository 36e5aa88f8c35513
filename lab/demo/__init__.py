"""``scripts/demo``: one story told with real parts, scene by scene, each step printed and checked.

Asterisk 22, SIPp callers and an agent softphone, Kannel with a fake SMSC, headless Chromium and
``ivr serve`` as a user runs it. Scenes are registered units (``lab.demo.registry``) so a later
capability joins the demo as one more module; the summary and exit code rules are in
``lab.demo.report``.
"""
