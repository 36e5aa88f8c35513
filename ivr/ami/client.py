"""Asterisk Manager Interface client: the only module that imports panoramisk.

Why a wrapper: panoramisk's API is untyped and callback-shaped; the rest of the product wants
``await ami.action({...}) -> dict`` with a bounded wait and a clear error, and must not care which
AMI library sits underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from panoramisk import Manager

from ivr.errors import IvrError


class AmiError(IvrError):
    """AMI refused the login or an action, or did not answer in time."""


def _as_dict(message: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(message).items()}


class AmiClient:
    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 5038, username: str, secret: str, timeout: float = 10.0
    ) -> None:
        self._timeout = timeout
        self._manager = Manager(
            host=host, port=port, username=username, secret=secret, ping_delay=10, reconnect_timeout=2, events="off"
        )

    async def connect(self) -> None:
        self._manager.loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(self._manager.connect(), self._timeout)
            for _ in range(int(self._timeout / 0.05)):
                if self._manager.authenticated:
                    return
                if self._manager.authenticated_future is None:
                    break
                await asyncio.sleep(0.05)
        except (OSError, TimeoutError) as exc:
            raise AmiError(f"cannot reach AMI: {exc}") from exc
        self.close()
        raise AmiError("AMI login refused (check ami.username / ami.secret)")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._manager.close()

    async def action(self, action: dict[str, str]) -> dict[str, str]:
        try:
            reply = await asyncio.wait_for(self._manager.send_action(action), self._timeout)
        except TimeoutError:
            raise AmiError(f"AMI action {action.get('Action')} timed out") from None
        if isinstance(reply, list):
            reply = reply[0]
        result = _as_dict(reply)
        if result.get("Response", "").lower() == "error":
            raise AmiError(f"AMI {action.get('Action')}: {result.get('Message', result)}")
        return result

    async def action_list(self, action: dict[str, str]) -> list[dict[str, str]]:
        """Actions answered by a list of events ending in ...Complete (QueueStatus, Status)."""
        try:
            replies = await asyncio.wait_for(self._manager.send_action(action, as_list=True), self._timeout)
        except TimeoutError:
            raise AmiError(f"AMI action {action.get('Action')} timed out") from None
        return [_as_dict(r) for r in replies]

    async def getvar(self, channel: str, variable: str) -> str | None:
        reply = await self.action({"Action": "Getvar", "Channel": channel, "Variable": variable})
        value = reply.get("Value")
        return value if value not in (None, "", "None") else None

    async def queue_entries(self, queue: str | None = None) -> list[dict[str, str]]:
        """Callers waiting in queues (QueueEntry events of QueueStatus)."""
        action = {"Action": "QueueStatus"}
        if queue:
            action["Queue"] = queue
        return [e for e in await self.action_list(action) if e.get("Event") == "QueueEntry"]
