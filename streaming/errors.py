"""The one error the streaming package raises for a caller's mistake: an HTTP status, a code and a sentence."""

from __future__ import annotations


class StreamError(Exception):
    """A request the relay refuses; nothing else is disturbed. Answered as {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
