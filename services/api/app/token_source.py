"""The interface between the stream and whatever writes the reply.

A token source turns a user message into an async generator of text pieces.
The embedded twin (:mod:`app.twin`) is one; an LLM client is another. The
stream closes the generator as soon as the client goes away, so an
implementation releases its upstream call in a ``finally`` block.
"""

from collections.abc import AsyncGenerator
from typing import Protocol


class TokenSourceError(Exception):
    """The source could not finish the reply. The stream ends with an ``error`` event."""


class TokenSource(Protocol):
    def stream(self, message: str) -> AsyncGenerator[str, None]: ...
