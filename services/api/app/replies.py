"""A reply as one process sees it: the tokens so far and how it ended.

The process that generates a reply holds it while generating; a process that
serves a client for a reply generated elsewhere holds a mirror, filled from
the shared store (:mod:`app.valkey_store`). Streams read either the same way:
the tokens from an index, then the end, waking on :meth:`Reply.watch`.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

# "stopped": ended early by Stop; "length": the model reached its token limit.
FinishReason = Literal["stop", "stopped", "length"]

# What one token costs in a process beyond its UTF-8 bytes: the str object's
# header (49 to 80 bytes by the widest character) and its slot in the list.
# Measured with tracemalloc: 83 bytes a token for 100,000 two-character
# tokens. A reply's size counts it, so CHAT_MAX_REPLY_BYTES bounds the memory
# a reply really takes, not only its text (a 1 MiB reply of 2-byte tokens
# would otherwise hold about 31 MB).
TOKEN_OVERHEAD = 80


def cost(text: str) -> int:
    """The memory ``text`` takes as one token of a reply (see TOKEN_OVERHEAD)."""
    return len(text.encode()) + TOKEN_OVERHEAD


@dataclass(frozen=True)
class Failure:
    code: str
    message: str


@dataclass(frozen=True)
class Usage:
    """What the model server reports a reply cost, when it does."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation, sent to the model with the next message."""

    user: str
    assistant: str

    @property
    def chars(self) -> int:
        return len(self.user) + len(self.assistant)


SOURCE_FAILED = Failure("source_failed", "The reply could not be completed. Send the message again.")
TOO_LARGE = Failure("reply_too_large", "The reply exceeded the size limit and was stopped.")
ABANDONED = Failure("reply_abandoned", "The reply was stopped because no client was connected.")
SHUTDOWN = Failure("server_shutdown", "The server stopped before the reply was complete.")
INTERRUPTED = Failure("reply_interrupted", "The server generating the reply stopped. Send the message again.")
STORE_UNAVAILABLE = Failure("store_unavailable", "The reply store is unavailable. Send the message again shortly.")
STORE_FULL = Failure("store_full", "The reply store is full. Send the message again shortly.")
# A model server's failures (app.openai_source). The messages name no server,
# address or key: they reach every client of the reply.
MODEL_UNAVAILABLE = Failure("model_unavailable", "The model server could not be reached. Send the message again later.")
MODEL_MISCONFIGURED = Failure("model_misconfigured", "The model server refused this service's credentials.")
MODEL_REJECTED = Failure("model_rejected", "The model server refused the request.")
MODEL_BUSY = Failure("model_busy", "The model server is busy. Send the message again shortly.")
MODEL_ERROR = Failure("model_error", "The model server failed. Send the message again shortly.")
MODEL_TIMEOUT = Failure("model_timeout", "The model did not start answering in time. Send the message again.")
MODEL_STALLED = Failure("model_stalled", "The model stopped answering mid-reply. Send the message again.")
MODEL_INTERRUPTED = Failure("model_interrupted", "The model's answer was cut off. Send the message again.")


class NotOwner(Exception):
    """The conversation belongs to another subject."""


class Watcher(Protocol):
    """What follows a reply: woken by :meth:`set` (app.open_streams.OpenStream)."""

    def set(self) -> None: ...


class StoreFull(Exception):
    """No new reply can start now: this process, or the store, is at its bound."""

    def __init__(self, code: str = "too_many_streams") -> None:
        super().__init__(code)
        self.code = code


class StoreUnavailable(Exception):
    """The shared store cannot be reached."""


@dataclass(eq=False)
class Reply:
    conversation_id: str
    message_id: str
    subject: str
    # The process generating it (app.reply_store.process_id()).
    producer: str = ""
    # The user message it answers; known to the process generating it, which
    # adds the two to the conversation's history when the reply ends well.
    message: str = ""
    tokens: list[str] = field(default_factory=list)
    size: int = 0  # bytes it takes in this process: its text plus TOKEN_OVERHEAD a token
    done: bool = False
    failure: Failure | None = None
    finish_reason: FinishReason = "stop"
    usage: Usage | None = None
    finished_at: float | None = None
    subscribers: int = 0
    _watchers: set[Watcher] = field(default_factory=set)

    def _notify(self) -> None:
        for watcher in self._watchers:
            watcher.set()

    def append(self, text: str) -> None:
        self.tokens.append(text)
        self.size += cost(text)
        self._notify()

    def finish(self, failure: Failure | None, now: float, reason: FinishReason = "stop") -> bool:
        """Record the end; False when it had already ended (the first end stands)."""
        if self.done:
            return False
        self.done, self.failure, self.finish_reason, self.finished_at = True, failure, reason, now
        self._notify()
        return True

    @contextmanager
    def watch(self, watcher: Watcher) -> Iterator[None]:
        """Set ``watcher`` whenever a token is added or the reply finishes."""
        self._watchers.add(watcher)
        try:
            yield
        finally:
            self._watchers.discard(watcher)
