"""What every command shares: the program name, the one-line error and its exit status."""

from __future__ import annotations

PROG = "saml-middleware"


class CLIError(Exception):
    """A problem to report as one line on stderr (exit status `status`)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def _one_line(text: str) -> str:
    return " ".join(text.split())
