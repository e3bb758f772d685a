"""trendflow's own exceptions: every driver error is turned into one of these at its engine's seam."""

from __future__ import annotations


class TrendflowError(Exception):
    """Base of every error trendflow raises on purpose."""


class ConfigError(TrendflowError):
    """A setting is missing or malformed; the message names it and what it accepts."""


class TransientError(TrendflowError):
    """A dependency (PostgreSQL, Redis, the network) failed; retrying later may succeed."""


class PermanentError(TrendflowError):
    """The data itself is wrong; retrying will fail the same way."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason
