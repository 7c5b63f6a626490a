"""The reply store contract: what every ReplyStore must do.

One suite for every implementation: ``TestMemoryStore``
(services/api/tests/test_memory_store.py, in-process) and ``TestValkeyStore``
(tests/integration/test_valkey_store.py, against the stack's real Valkey)
subclass :class:`ReplyStoreContract` and say how to make a store.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from app.replies import ABANDONED, SHUTDOWN, SOURCE_FAILED, TOO_LARGE, NotOwner, Reply, StoreFull, Turn
from app.reply_store import ReplyLimits, ReplyStore
from app.token_source import TokenSource
from scripted_sources import ScriptedSource

T = TypeVar("T")

DEFAULT_LIMITS: dict[str, Any] = {
    "resume_grace": 0.0,
    "resume_ttl": 60.0,
    "max_replies": 10,
    "max_reply_bytes": 1_048_576,
    "max_reply_tokens": 1000,
}


def limits(**overrides: Any) -> ReplyLimits:
    return ReplyLimits(**{**DEFAULT_LIMITS, **overrides})


async def until_done(reply: Reply, timeout: float = 10) -> Reply:
    async with asyncio.timeout(timeout):
        while not reply.done:
            wake = asyncio.Event()
            with reply.watch(wake):
                if not reply.done:
                    await wake.wait()
    return reply


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ReplyStoreContract:
    """Subclasses implement :meth:`make` (called inside the test's event loop)."""

    async def make(self, **overrides: Any) -> ReplyStore:
        """A store with these limits (and ``conversation_ttl``, in seconds)."""
        raise NotImplementedError

    def run(self, test: Callable[[], Awaitable[T]]) -> T:
        return asyncio.run(test())  # type: ignore[arg-type]

    async def start(
        self,
        store: ReplyStore,
        source: TokenSource,
        *,
        subject: str = "alice",
        conversation_id: str | None = None,
        message: str = "hi",
    ) -> Reply:
        return await store.start(
            source,
            message,
            subject=subject,
            conversation_id=conversation_id or new_id("conv"),
            message_id=new_id("msg"),
        )

    def test_a_reply_collects_every_token_and_ends(self) -> None:
        async def test() -> None:
            store = await self.make()
            reply = await until_done(await self.start(store, ScriptedSource(["a", "b", "c"])))
            assert (reply.tokens, reply.failure, reply.finish_reason) == (["a", "b", "c"], None, "stop")
            found = await store.open(reply.message_id)
            assert found is not None and found.tokens == ["a", "b", "c"] and found.done
            await store.close(0)

        self.run(test)

    def test_an_unknown_reply_is_none(self) -> None:
        async def test() -> None:
            store = await self.make()
            assert await store.open(new_id("msg")) is None
            await store.close(0)

        self.run(test)

    def test_a_failing_source_ends_the_reply_with_an_error(self) -> None:
        async def test() -> None:
            store = await self.make()
            reply = await until_done(await self.start(store, ScriptedSource(["a", "b"], fail_after=1)))
            assert (reply.tokens, reply.failure) == (["a"], SOURCE_FAILED)
            await store.close(0)

        self.run(test)

    @pytest.mark.parametrize(
        ("tokens", "bounds", "kept"),
        [
            (["x" * 600, "y" * 600, "z"], {"max_reply_bytes": 1024}, ["x" * 600]),
            (["a"] * 10, {"max_reply_tokens": 4}, ["a"] * 4),
        ],
        ids=["bytes", "tokens"],
    )
    def test_a_reply_past_a_bound_is_stopped(self, tokens: list[str], bounds: dict[str, int], kept: list[str]) -> None:
        source = ScriptedSource(tokens)

        async def test() -> None:
            store = await self.make(**bounds)
            reply = await until_done(await self.start(store, source))
            assert (reply.tokens, reply.failure, source.closed) == (kept, TOO_LARGE, True)
            await store.close(0)

        self.run(test)

    def test_when_the_last_client_leaves_without_grace_the_source_is_cancelled(self) -> None:
        source = ScriptedSource(["a"] * 1000, delay=0.01)

        async def test() -> None:
            store = await self.make(resume_grace=0)
            reply = await self.start(store, source)
            with store.attach(reply):
                await asyncio.sleep(0.05)
            await until_done(reply)
            assert reply.failure == ABANDONED and source.closed and len(reply.tokens) < 1000
            await store.close(0)

        self.run(test)

    def test_a_client_that_returns_within_the_grace_keeps_the_reply_running(self) -> None:
        source = ScriptedSource(["a"] * 40, delay=0.01)

        async def test() -> None:
            store = await self.make(resume_grace=1.0)
            reply = await self.start(store, source)
            with store.attach(reply):
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)  # away for a tenth of the grace
            with store.attach(reply):
                await until_done(reply)
            assert (reply.tokens, reply.failure) == (["a"] * 40, None)
            await store.close(0)

        self.run(test)

    def test_stop_ends_the_reply_with_finish_reason_stopped(self) -> None:
        source = ScriptedSource(["a"] * 1000, delay=0.01)

        async def test() -> None:
            store = await self.make()
            reply = await self.start(store, source)
            with store.attach(reply):
                await asyncio.sleep(0.05)
                await store.stop(reply)
                await until_done(reply)
            assert (reply.failure, reply.finish_reason, source.closed) == (None, "stopped", True)
            assert 0 < len(reply.tokens) < 1000
            await store.close(0)

        self.run(test)

    def test_close_without_drain_ends_running_replies_as_shutdown(self) -> None:
        source = ScriptedSource(["a"] * 1000, delay=0.01)

        async def test() -> None:
            store = await self.make()
            reply = await self.start(store, source)
            await asyncio.sleep(0.03)
            await store.close(0)
            assert (reply.failure, source.closed) == (SHUTDOWN, True)

        self.run(test)

    def test_a_conversation_belongs_to_the_subject_that_started_it(self) -> None:
        async def test() -> None:
            store = await self.make()
            conversation = new_id("conv")
            await self.start(store, ScriptedSource(["a"]), subject="alice", conversation_id=conversation)
            with pytest.raises(NotOwner):
                await self.start(store, ScriptedSource(["a"]), subject="mallory", conversation_id=conversation)
            # The owner goes on; the refused request recorded nothing.
            await self.start(store, ScriptedSource(["a"]), subject="alice", conversation_id=conversation)
            await store.close(0)

        self.run(test)

    def test_a_full_process_refuses_new_replies_and_records_nothing(self) -> None:
        async def test() -> None:
            store = await self.make(max_replies=2)
            running = [await self.start(store, ScriptedSource(["a"] * 1000, delay=0.01)) for _ in range(2)]
            assert store.at_capacity  # what readiness reports (GET /readyz)
            refused = new_id("conv")
            with pytest.raises(StoreFull):
                await self.start(store, ScriptedSource(["a"]), subject="mallory", conversation_id=refused)
            await store.stop(running[0])
            await until_done(running[0])
            assert not store.at_capacity  # one slot free again
            await store.stop(running[1])
            await until_done(running[1])
            # The refused claim left no owner behind: anyone may start it.
            await self.start(store, ScriptedSource(["a"]), subject="alice", conversation_id=refused)
            await store.close(0)

        self.run(test)

    def test_many_new_conversations_never_free_another_subjects_one(self) -> None:
        async def test() -> None:
            store = await self.make(max_replies=3)
            victim = new_id("conv")
            await until_done(await self.start(store, ScriptedSource(["a"]), subject="alice", conversation_id=victim))
            for _ in range(31):  # 10 x max_replies + 1 new conversations
                with contextlib.suppress(StoreFull):
                    await until_done(await self.start(store, ScriptedSource(["a"]), subject="mallory"))
            with pytest.raises(NotOwner):
                await self.start(store, ScriptedSource(["a"]), subject="mallory", conversation_id=victim)
            await store.close(0)

        self.run(test)

    # ---- the conversation's history (multi-turn) -----------------------------------

    async def exchange(
        self, store: ReplyStore, conversation_id: str, message: str, tokens: list[str], **source: Any
    ) -> tuple[Reply, ScriptedSource]:
        scripted = ScriptedSource(tokens, **source)
        reply = await self.start(store, scripted, conversation_id=conversation_id, message=message)
        return await until_done(reply), scripted

    def test_each_message_is_sent_with_the_turns_before_it(self) -> None:
        async def test() -> None:
            store = await self.make()
            conversation = new_id("conv")
            _, first = await self.exchange(store, conversation, "Hi, I am Ana.", ["Hello", " Ana"])
            _, second = await self.exchange(store, conversation, "Who am I?", ["You", " are", " Ana"])
            _, third = await self.exchange(store, conversation, "Thanks", ["Welcome"])
            assert first.history == []
            assert second.history == [Turn("Hi, I am Ana.", "Hello Ana")]
            assert third.history == [Turn("Hi, I am Ana.", "Hello Ana"), Turn("Who am I?", "You are Ana")]
            # Another conversation has its own (none).
            _, other = await self.exchange(store, new_id("conv"), "Who am I?", ["?"])
            assert other.history == []
            await store.close(0)

        self.run(test)

    def test_a_failed_reply_stays_out_of_the_history_and_a_stopped_one_enters_it(self) -> None:
        async def test() -> None:
            store = await self.make()
            conversation = new_id("conv")
            failed, _ = await self.exchange(store, conversation, "one", ["a", "b"], fail_after=1)
            assert failed.failure is SOURCE_FAILED
            assert await store.history(conversation) == []
            running = await self.start(
                store, ScriptedSource(["x"] * 1000, delay=0.01), conversation_id=conversation, message="two"
            )
            with store.attach(running):
                while len(running.tokens) < 2:
                    await asyncio.sleep(0.01)
                await store.stop(running)
                await until_done(running)
            assert running.finish_reason == "stopped"
            assert await store.history(conversation) == [Turn("two", "".join(running.tokens))]
            await store.close(0)

        self.run(test)

    def test_the_history_is_bounded_in_turns_and_characters(self) -> None:
        async def test() -> None:
            store = await self.make(history_turns=2, history_chars=25)
            conversation = new_id("conv")
            for n in range(4):
                await self.exchange(store, conversation, f"q{n}", [f"answer {n}"])
            # Two turns of 10 characters each fit; a third would not be sent anyway.
            assert await store.history(conversation) == [Turn("q2", "answer 2"), Turn("q3", "answer 3")]
            await self.exchange(store, conversation, "q4", ["a much longer answer"])
            assert await store.history(conversation) == [Turn("q4", "a much longer answer")]
            await store.close(0)

        self.run(test)

    def test_no_history_is_kept_when_turns_are_off(self) -> None:
        async def test() -> None:
            store = await self.make(history_turns=0)
            conversation = new_id("conv")
            await self.exchange(store, conversation, "one", ["a"])
            _, second = await self.exchange(store, conversation, "two", ["b"])
            assert second.history == []
            await store.close(0)

        self.run(test)

    def test_a_reply_that_outlives_its_conversation_adds_nothing_to_the_next_owners(self) -> None:
        async def test() -> None:
            store = await self.make(conversation_ttl=1.0)
            conversation = new_id("conv")
            # 1.6 s of reply: it ends after alice's conversation expired (1 s)
            # and mallory claimed the id, before mallory's expires (2.1 s).
            slow = await self.start(store, ScriptedSource(["a"] * 16, delay=0.1), conversation_id=conversation)
            await asyncio.sleep(1.1)
            source = ScriptedSource(["b"])
            await until_done(await self.start(store, source, subject="mallory", conversation_id=conversation))
            await until_done(slow)
            assert source.history == [] and await store.history(conversation) == [Turn("hi", "b")]
            await store.close(0)

        self.run(test)

    def test_the_history_expires_with_the_conversation(self) -> None:
        async def test() -> None:
            store = await self.make(conversation_ttl=0.5)
            conversation = new_id("conv")
            await self.exchange(store, conversation, "one", ["a"])
            assert await store.history(conversation) == [Turn("one", "a")]
            await asyncio.sleep(0.7)
            assert await store.history(conversation) == []
            # A new owner of the same id starts with none of the old turns.
            source = ScriptedSource(["b"])
            await until_done(await self.start(store, source, subject="mallory", conversation_id=conversation))
            assert source.history == [] and await store.history(conversation) == [Turn("hi", "b")]
            await store.close(0)

        self.run(test)
