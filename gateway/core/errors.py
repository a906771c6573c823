"""One small exception hierarchy, raised at the driver boundary and shown to users as one line."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` holds ``file:line: key: message`` strings."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class DeviceUnavailable(GatewayError):
    """A peer (upsd, a switch, the modem, a link) cannot be reached right now."""


class DeviceRefused(GatewayError):
    """A peer answered but refused: wrong credentials, unsupported object, ERROR reply."""


class ParseError(GatewayError):
    """A peer's reply could not be understood."""


class JournalError(GatewayError):
    """The journal could not be read or written (disk full, corrupt file)."""


class ActionRejected(GatewayError):
    """An admin action is not valid in the current state; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
