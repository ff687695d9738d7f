"""Errors that reach the user as one clear line: they name the file, field or stage at fault."""

from __future__ import annotations

__all__ = ["IspError", "ConfigError", "InputError", "StageError", "BackendError"]


class IspError(Exception):
    """Base of every error isp-sim reports to the user without a traceback."""


class ConfigError(IspError, ValueError):
    """A configuration value is unknown, missing, of the wrong type or out of range."""


class InputError(IspError, ValueError):
    """An input file is missing, unreadable or not what the scene or reader expects."""


class StageError(IspError, ValueError):
    """A pipeline stage received data it cannot process (wrong domain, CFA or colour space)."""


class BackendError(IspError, RuntimeError):
    """The requested array backend cannot run on this machine."""
