"""The shipped flows with the support menu reading back every spoken answer, for speech tests.

``confirm_below: 1.0`` makes every answer heard by voice "unsure", so a test can drive the
read-back ("Did you say ...? Is that right?") with any recording.
"""

from __future__ import annotations

import re
from pathlib import Path

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"


def flows_with_read_back(tmp_path: Path) -> Path:
    """A copy of ``dialplans/`` in ``tmp_path/flows`` whose support main menu reads back every answer."""
    flows = tmp_path / "flows"
    flows.mkdir()
    for path in DIALPLANS.glob("*.yaml"):
        text = path.read_text()
        if path.name == "support.yaml":
            # The shipped menu has its own confirm_below (after personalize): raise it to 1.0.
            text = re.sub(
                r"(      personalize: true\n)(?:      confirm_below: [0-9.]+.*\n)?",
                r"\1      confirm_below: 1.0\n",
                text,
                count=1,
            )
            assert "confirm_below: 1.0" in text, "support.yaml's main menu no longer says personalize: true"
        (flows / path.name).write_text(text)
    return flows
