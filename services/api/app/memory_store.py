"""Replies in this process's memory (``CHAT_REPLY_STORE=memory``).

For in-process tests and a single process. Nothing survives a restart, and a
reconnect (Last-Event-ID) must reach the process that made the reply: one
gunicorn worker, one replica. The shared store is :mod:`app.valkey_store`.

Bounds: at most ``max_replies`` replies are kept (finished ones are dropped,
oldest first, to make room; when every slot generates, new replies get
StoreFull). Conversation owners are kept while the conversation is used
within ``conversation_ttl``; they are never forgotten early to make room:
past ``10 x max_replies`` live conversations new ones are refused, so nobody
can claim another subject's conversation by creating many new ones. A
conversation's history is kept with its owner and forgotten with it.
"""

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import ClassVar

from app.replies import NotOwner, Reply, StoreFull, Turn
from app.reply_store import ReplyLimits, ReplyStore, bounded, turn_of


class MemoryReplyStore(ReplyStore):
    shared: ClassVar[bool] = False

    def __init__(
        self, limits: ReplyLimits, *, conversation_ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(limits, clock=clock)
        self._conversation_ttl = conversation_ttl
        # conversation id -> (owner, expires at); refreshed by use, oldest first.
        self._owners: OrderedDict[str, tuple[str, float]] = OrderedDict()
        # conversation id -> its history, oldest first, within the limits.
        self._turns: dict[str, list[Turn]] = {}

    async def _create(self, *, subject: str, conversation_id: str, message_id: str) -> tuple[Reply, list[Turn]]:
        now = self._clock()
        owner = self._owners.get(conversation_id)
        if owner is not None and owner[1] > now and owner[0] != subject:
            raise NotOwner(conversation_id)
        self._evict(now)
        if owner is None and len(self._owners) >= 10 * self.limits.max_replies:
            raise StoreFull
        # Every check passed: only now is anything recorded.
        self._owners[conversation_id] = (subject, now + self._conversation_ttl)
        self._owners.move_to_end(conversation_id)
        reply = Reply(conversation_id=conversation_id, message_id=message_id, subject=subject, producer=self.process)
        return reply, list(self._turns.get(conversation_id, []))

    async def _history(self, conversation_id: str) -> list[Turn]:
        owner = self._owners.get(conversation_id)
        if owner is None or owner[1] <= self._clock():
            return []
        return list(self._turns.get(conversation_id, []))

    def _local(self, message_id: str) -> Reply | None:
        reply = self._replies.get(message_id)
        if reply is not None and self._expired(reply, self._clock()):
            self._drop(message_id)
            return None
        return reply

    async def _load(self, message_id: str) -> Reply | None:
        return None  # no other process's replies are reachable

    def _record_token(self, reply: Reply, index: int, text: str) -> None:
        pass  # the Reply is the record

    def _record_end(self, reply: Reply) -> None:
        turn = turn_of(reply)
        owner = self._owners.get(reply.conversation_id)
        # Only into the conversation of the reply's subject: one that expired
        # while the reply was generating may belong to someone else by now.
        if turn is not None and owner is not None and owner[0] == reply.subject and owner[1] > self._clock():
            turns = [*self._turns.get(reply.conversation_id, []), turn]
            self._turns[reply.conversation_id] = bounded(turns, self.limits)

    def _released(self, reply: Reply) -> None:
        pass  # kept for resume until it expires or is evicted

    async def _watched_elsewhere(self, reply: Reply) -> float:
        return 0.0

    async def _signal_stop(self, reply: Reply) -> None:
        pass  # every reply here is generated here: stop() cancels it directly

    async def _shutdown(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._replies)

    def _expired(self, reply: Reply, now: float) -> bool:
        return reply.finished_at is not None and now - reply.finished_at > self.limits.resume_ttl

    def _drop(self, message_id: str) -> None:
        self._replies.pop(message_id, None)

    def _evict(self, now: float) -> None:
        """Drop expired replies and owners, then the oldest finished replies
        while the store is full; StoreFull when all of them still generate."""
        while self._owners:
            conversation_id, (_, expires_at) = next(iter(self._owners.items()))
            if expires_at > now:
                break
            del self._owners[conversation_id]
            self._turns.pop(conversation_id, None)
        # self._replies keeps insertion order: the oldest come first.
        while self._replies:
            message_id, reply = next(iter(self._replies.items()))
            if not self._expired(reply, now):
                break
            self._drop(message_id)
        if len(self._replies) < self.limits.max_replies:
            return
        for message_id in [m for m, r in self._replies.items() if r.done]:
            self._drop(message_id)
            if len(self._replies) < self.limits.max_replies:
                return
        raise StoreFull
