"""JSON error bodies for every refusal, so clients parse one shape: ``{"error": "..."}``."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web


def json_error(
    kind: type[web.HTTPException], message: str, *, headers: Mapping[str, str] | None = None
) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}), content_type="application/json", headers=headers)
