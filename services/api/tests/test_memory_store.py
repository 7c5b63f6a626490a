import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest
from app.memory_store import MemoryReplyStore
from app.replies import StoreFull, Turn
from scripted_sources import ScriptedSource
from store_contract import ReplyStoreContract, limits, new_id, until_done


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestMemoryStore(ReplyStoreContract):
    async def make(self, **overrides: Any) -> MemoryReplyStore:
        conversation_ttl = overrides.pop("conversation_ttl", 3600)
        return MemoryReplyStore(limits(**overrides), conversation_ttl=conversation_ttl)


def test_finished_replies_expire_after_the_ttl() -> None:
    clock = Clock()

    async def run() -> None:
        store = MemoryReplyStore(limits(resume_ttl=60), conversation_ttl=3600, clock=clock)
        reply = await until_done(await TestMemoryStore().start(store, ScriptedSource(["a"])))
        clock.now += 59
        assert await store.open(reply.message_id) is reply
        clock.now += 2
        assert await store.open(reply.message_id) is None

    asyncio.run(run())


def test_a_full_store_evicts_finished_replies_and_refuses_when_all_are_running() -> None:
    async def run() -> None:
        store = MemoryReplyStore(limits(max_replies=2), conversation_ttl=3600)
        contract = TestMemoryStore()
        done = await until_done(await contract.start(store, ScriptedSource(["a"])))
        await contract.start(store, ScriptedSource(["a"] * 100, delay=0.01))
        assert len(store) == 2
        await contract.start(store, ScriptedSource(["a"] * 100, delay=0.01))  # evicts the finished one
        assert await store.open(done.message_id) is None and len(store) == 2
        with pytest.raises(StoreFull):
            await contract.start(store, ScriptedSource(["a"]))
        await store.close(0)

    asyncio.run(run())


def test_an_owner_is_forgotten_only_when_its_conversation_expires() -> None:
    clock = Clock()

    async def run() -> None:
        store = MemoryReplyStore(limits(), conversation_ttl=100, clock=clock)
        contract = TestMemoryStore()
        conversation = new_id("conv")
        await until_done(await contract.start(store, ScriptedSource(["a"]), conversation_id=conversation))
        clock.now += 99
        await until_done(await contract.start(store, ScriptedSource(["a"]), conversation_id=conversation))  # use
        clock.now += 99  # 198 s after the start, 99 s after the last use: still alice's
        with pytest.raises(Exception, match=conversation):
            await contract.start(store, ScriptedSource(["a"]), subject="mallory", conversation_id=conversation)
        clock.now += 2
        await contract.start(store, ScriptedSource(["a"]), subject="mallory", conversation_id=conversation)
        await store.close(0)

    asyncio.run(run())


def test_the_byte_bound_counts_what_a_reply_really_takes() -> None:
    """Many tiny tokens: the bound stops the reply at its memory, not its text."""
    import tracemalloc

    limit = 256 * 1024

    class Fresh:
        """A source that makes each token as it goes, as a model's client does."""

        closed = False

        async def stream(self, message: str, history: Sequence[Turn] = ()) -> AsyncGenerator[str, None]:
            for i in range(100_000):
                yield chr(0x600 + i % 200) + ""  # a new 2-byte (UTF-8) string each time
                if i % 1000 == 0:
                    await asyncio.sleep(0)

    source = Fresh()

    async def run() -> tuple[int, int]:
        store = MemoryReplyStore(limits(max_reply_bytes=limit, max_reply_tokens=1_000_000), conversation_ttl=3600)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        reply = await until_done(await TestMemoryStore().start(store, source))
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert reply.failure is not None and reply.failure.code == "reply_too_large"
        return len(reply.tokens), held

    tokens, held = asyncio.run(run())
    print(f"\n{tokens} tokens of 2 bytes kept under a {limit} B bound; tracemalloc: {held} B")
    assert tokens < limit / 80
    assert held < 1.5 * limit, held  # the text alone would have let 131,072 tokens (~11 MB) in
