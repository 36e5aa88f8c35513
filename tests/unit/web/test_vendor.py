"""The vendored JsSIP is the file its README describes (version and sha256), served by the
controller with its licence beside it: an upgrade that forgets the README fails here."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[3] / "ivr" / "web" / "static" / "vendor"


def test_jssip_matches_the_readme_and_carries_its_licences() -> None:
    readme = (VENDOR / "README.md").read_text()
    bundle = (VENDOR / "jssip" / "jssip.min.js").read_bytes()
    match = re.search(r"sha256sum jssip\.min\.js\s+# ([0-9a-f]{64})", readme)
    assert match and hashlib.sha256(bundle).hexdigest() == match.group(1)
    assert "JsSIP 3.13.8" in readme
    licences = (VENDOR / "jssip" / "LICENSE").read_text()
    for package in ("jssip", "debug", "ms", "events", "sdp-transform"):
        assert f"================ {package} " in licences
    assert b"WebSocketInterface" in bundle and b"RTCSession" in bundle
