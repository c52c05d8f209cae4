"""The CLI's one failure type and docker's wording of errors, in a module of their own so every command
(and `python -m k3c.cli.main`) shares them without importing anything else."""

from __future__ import annotations


class CLIError(Exception):
    """A failure printed as exactly one line (already worded like docker) with docker's exit code."""

    def __init__(self, message: str, code: int = 125) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def daemon_error(message: str, code: int = 1) -> CLIError:
    """Docker prefixes every error the daemon returned with this phrase; scripts grep for it."""
    return CLIError(f"Error response from daemon: {message}", code)


def no_such_container(ref: str) -> CLIError:
    return daemon_error(f"No such container: {ref}")
