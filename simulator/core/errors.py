"""User-facing errors. Each carries one line: what is wrong and where (a dotted path or a file)."""

from __future__ import annotations


class HwsimError(Exception):
    """An error caused by the user's input; the CLI prints ``str(err)`` on one line and exits 2."""

    def __init__(self, message: str, where: str | None = None) -> None:
        # args are the constructor's arguments: SimPy re-raises a failed process's exception as
        # ``type(err)(*err.args)``, and pickling rebuilds it the same way
        super().__init__(message, where)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class ConfigError(HwsimError):
    """A scenario, preset or override that fails validation."""


class UnitError(ConfigError):
    """A quantity that cannot be parsed, or a bare number where a unit is required."""


class UnknownKindError(ConfigError):
    """A plug-in kind that no registry knows."""


class InputFileError(HwsimError):
    """A trace, model config or measurement file that is missing, malformed or incomplete."""


class CapacityError(HwsimError):
    """An impossible configuration: a model that does not fit, a KV cache with no room."""


class PolicyError(HwsimError):
    """A policy returned a decision the framework rejects; names the policy and the reason."""

    def __init__(self, policy: str, reason: str) -> None:
        super().__init__(reason, where=f"policy {policy!r}")
        self.args = (policy, reason)
        self.policy = policy
        self.reason = reason
