"""The interface between the stream and whatever writes the reply.

A token source turns a user message into an async iterator of text pieces.
The embedded twin (:mod:`app.twin`) is one; an LLM client is another. The
stream cancels the iterator when the client goes away, so an implementation
should release its upstream call in a ``finally`` block.
"""

from collections.abc import AsyncIterator
from typing import Protocol


class TokenSourceError(Exception):
    """The source could not finish the reply. The stream ends with an ``error`` event."""


class TokenSource(Protocol):
    def stream(self, message: str) -> AsyncIterator[str]: ...
