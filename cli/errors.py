"""The CLI's failure type, in a module of its own so every command (and `python -m k3c.cli.main`) shares it."""

from __future__ import annotations


class CLIError(Exception):
    """A failure with a one-line message and the exit code docker would use."""

    def __init__(self, message: str, code: int = 125):
        super().__init__(message)
        self.code = code
