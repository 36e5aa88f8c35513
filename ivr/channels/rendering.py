"""What every channel does with a flow command it has no case for.

Why a function typed like ``typing.assert_never``: each channel renders commands in one ``match``
over the ``Command`` union and ends it with ``case _: cannot_render(<channel>, command)``. When a
new command joins the union, mypy reports every channel whose ``match`` lacks it (the argument is
no longer ``Never`` there); at run time an unknown command is a ``CannotRender`` naming the
command and the channel, which the channel turns into the engine's safe path, never a skip.
A command a channel knows but cannot render on its medium gets its own case raising
``CannotRender`` the same way.
"""

from __future__ import annotations

from typing import Never, NoReturn

from ivr.errors import CannotRender


def cannot_render(channel: str, command: Never) -> NoReturn:
    """The exhaustive end of a channel's ``match`` on ``Command`` (see the module docstring)."""
    raise CannotRender(channel, command)
