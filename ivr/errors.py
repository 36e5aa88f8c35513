"""One exception root for the whole product.

Why one root: callers (the AGI server, the CLI) catch ``IvrError`` to turn any anticipated
failure into a clear message or a safe dialplan fallback, and let anything else crash loudly.

::

    IvrError
    ├── ConfigError                 bad or missing configuration (a secret with no value, ...)
    ├── FlowError                   a flow file cannot be used
    │   └── FlowLoadError           carries a list of FlowProblem(file, line, step, message)
    ├── ProtocolError               a protocol was not followed
    │   ├── LocalProtocolError      *we* misused it (a bug here): e.g. a newline in an AGI argument
    │   └── RemoteProtocolError     the *peer* sent garbage: e.g. a malformed AGI reply line
    ├── CallEnded                   the caller hung up: control flow, not a failure
    ├── ChannelError                a channel cannot render a command or the medium broke
    │   ├── CannotRender            a channel was given a command its medium has no form for
    │   └── CommandTimeout          a bounded wait on the peer ran out
    └── StoreError                  persistence failed
"""

from __future__ import annotations


class IvrError(Exception):
    """Root of every error this product raises on purpose."""


class ConfigError(IvrError):
    """Configuration is missing, malformed, or unsafe (e.g. a secret left empty)."""


class FlowError(IvrError):
    """A flow cannot be loaded or executed."""


class ProtocolError(IvrError):
    """A wire protocol was not followed."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol does not allow; a bug on our side."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class CallEnded(IvrError):
    """The caller hung up (or the channel died). Control flow, logged at INFO."""


class ChannelError(IvrError):
    """A channel could not execute a flow command."""


class CannotRender(ChannelError):
    """A channel was given a flow command it has no form for (a transfer in a chat): the journey
    then takes the engine's safe path (``FlowMachine.fail``), never a silent skip."""

    def __init__(self, channel: str, command: object) -> None:
        self.channel = channel
        self.command = command
        step = getattr(command, "step", None)
        where = f" at step {step}" if step else ""
        super().__init__(f"the {channel} channel cannot render {type(command).__name__}{where}")


class CommandTimeout(ChannelError):
    """A bounded wait for the peer ran out."""


class StoreError(IvrError):
    """Persistence failed."""
