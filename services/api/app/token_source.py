"""The interface between the stream and whatever writes the reply.

A token source turns a user message, with the conversation's earlier turns,
into an async generator of text pieces. The embedded twin (:mod:`app.twin`)
is one; a client of an OpenAI-compatible model server
(:mod:`app.openai_source`) is another. The reply store closes the generator
as soon as the reply is stopped, abandoned or cut by shutdown, so an
implementation releases its upstream call in a ``finally`` block (or an
``async with``): that is what makes a model server stop generating.

A source may yield one :class:`Finish` last, to say how the reply ended
(a token limit) and what it cost; a source that yields none ended with
``stop``.
"""

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from app.replies import Failure, Turn, Usage


@dataclass(frozen=True)
class Finish:
    reason: Literal["stop", "length"] = "stop"
    usage: Usage | None = None


class TokenSourceError(Exception):
    """The source could not finish the reply. The stream ends with an ``error``
    event: ``failure``'s code and message, or ``source_failed``."""

    def __init__(self, detail: str, failure: Failure | None = None) -> None:
        super().__init__(detail)
        self.failure = failure


class TokenSource(Protocol):
    def stream(self, message: str, history: Sequence[Turn] = ()) -> AsyncGenerator[str | Finish, None]: ...
