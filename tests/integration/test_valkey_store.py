"""The Valkey reply store against the stack's real Valkey: the contract every
store passes, then what only a shared store does, with two store instances
standing for two processes (or replicas).

The tests use their own database (15), so the stack's API, on database 0,
neither sees their keys nor adds to the keys they count.
"""

import asyncio
import os
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest
import redis.asyncio as redis
from app.replies import INTERRUPTED, Reply, Turn, Usage
from app.token_source import Finish
from app.valkey_store import ValkeyReplyStore
from scripted_sources import ScriptedSource
from store_contract import ReplyStoreContract, limits, new_id, until_done

from tests.integration.stack import Stack

LEASE = 1.0  # producer lease in these tests (seconds)


@pytest.fixture(scope="module")
def valkey(request: pytest.FixtureRequest) -> tuple[str, str]:
    """URL and password of a Valkey: VALKEY_TEST_URL and VALKEY_TEST_PASSWORD
    when set (a developer's own server), else the stack's."""
    if "VALKEY_TEST_URL" in os.environ:
        return os.environ["VALKEY_TEST_URL"], os.environ.get("VALKEY_TEST_PASSWORD", "")
    stack: Stack = request.getfixturevalue("stack")
    return f"redis://{stack.valkey_address()}/15", stack.valkey_password


class TestValkeyStore(ReplyStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, valkey: tuple[str, str]) -> None:
        self.url, self.password = valkey

    async def make(self, **overrides: Any) -> ValkeyReplyStore:
        conversation_ttl = overrides.pop("conversation_ttl", 3600)
        store = ValkeyReplyStore(
            limits(**overrides),
            url=self.url,
            password=self.password,
            conversation_ttl=conversation_ttl,
            producer_lease=LEASE,
            max_connections=4,
            process=new_id("test"),  # two stores in this process stand for two processes
        )
        await store.begin()
        return store

    async def keys(self, replies: list[Reply]) -> list[str]:
        """Every key left of these replies and their conversations."""
        client = redis.Redis.from_url(self.url, password=self.password, decode_responses=True)
        ids = {r.message_id for r in replies} | {r.conversation_id for r in replies}
        try:
            return sorted([k async for k in client.scan_iter("chat:*") if k.split(":")[2] in ids])
        finally:
            await client.aclose()

    # ---- two processes -------------------------------------------------------------

    def test_another_process_resumes_the_reply_exactly_once(self) -> None:
        tokens = [f"t{i} " for i in range(60)]

        async def test() -> None:
            producer, follower = await self.make(resume_grace=5), await self.make(resume_grace=5)
            reply = await self.start(producer, ScriptedSource(tokens, delay=0.01))
            with producer.attach(reply):
                await asyncio.sleep(0.2)
            mirror = await follower.open(reply.message_id)
            assert mirror is not None and mirror is not reply and mirror.producer == producer.process
            assert 0 < len(mirror.tokens) < 60, "resumed mid-reply"
            with follower.attach(mirror):
                await until_done(mirror)
            assert (mirror.tokens, mirror.failure, mirror.finish_reason) == (tokens, None, "stop")
            await producer.close(0)
            await follower.close(0)

        self.run(test)

    def test_followers_of_a_dead_producer_get_reply_interrupted_within_the_lease(self) -> None:
        async def test() -> None:
            producer, follower = await self.make(resume_grace=30), await self.make()
            reply = await self.start(producer, ScriptedSource(["a"] * 1000, delay=0.02))
            await asyncio.sleep(0.1)
            mirror = await follower.open(reply.message_id)
            assert mirror is not None
            # The producer dies: no more writes, no lease, no closing entry.
            producer._record_token = lambda *_: None  # type: ignore[method-assign]
            producer._record_end = lambda *_: None  # type: ignore[method-assign]
            for task in producer._background:
                task.cancel()
            for task in list(producer._tasks.values()):
                task.cancel()
            loop = asyncio.get_running_loop()
            died = loop.time()
            with follower.attach(mirror):
                await until_done(mirror)
            detected = loop.time() - died
            print(f"\nproducer gone: followers told after {detected:.2f} s (lease {LEASE} s)")
            assert mirror.failure == INTERRUPTED
            assert detected < LEASE + 1.0
            # A later reader gets the same end from the store.
            again = await follower.open(reply.message_id)
            assert again is not None and again.failure == INTERRUPTED
            await follower.close(0)
            await producer._redis.aclose()  # what the dead process left open
            await producer._reader.aclose()

        self.run(test)

    def test_stop_reaches_the_producing_process(self) -> None:
        source = ScriptedSource(["a"] * 1000, delay=0.01)

        async def test() -> None:
            producer, other = await self.make(resume_grace=5), await self.make()
            reply = await self.start(producer, source)
            await asyncio.sleep(0.3)  # the stop channel is subscribed
            mirror = await other.open(reply.message_id)
            assert mirror is not None
            with other.attach(mirror):
                await other.stop(mirror)
                await until_done(mirror)
            assert (mirror.failure, mirror.finish_reason) == (None, "stopped")
            assert mirror.tokens == reply.tokens and source.closed
            await producer.close(0)
            await other.close(0)

        self.run(test)

    def test_a_draining_process_finishes_its_replies_into_the_store(self) -> None:
        tokens = ["a"] * 50

        async def test() -> None:
            producer, other = await self.make(resume_grace=5), await self.make()
            reply = await self.start(producer, ScriptedSource(tokens, delay=0.02))
            await asyncio.sleep(0.1)
            mirror = await other.open(reply.message_id)
            assert mirror is not None
            with other.attach(mirror):
                await producer.close(10)  # SIGTERM: drain
                await until_done(mirror)
            assert (mirror.tokens, mirror.failure) == (tokens, None)
            await other.close(0)

        self.run(test)

    def test_a_drain_deadline_ends_the_reply_with_an_explicit_error(self) -> None:
        async def test() -> None:
            producer, other = await self.make(resume_grace=5), await self.make()
            reply = await self.start(producer, ScriptedSource(["a"] * 1000, delay=0.02))
            await asyncio.sleep(0.1)
            mirror = await other.open(reply.message_id)
            assert mirror is not None
            with other.attach(mirror):
                await producer.close(0.2)
                await until_done(mirror)
            assert mirror.failure is not None and mirror.failure.code == "server_shutdown"
            await other.close(0)

        self.run(test)

    def test_a_client_elsewhere_keeps_the_reply_generating_past_the_grace(self) -> None:
        async def test() -> None:
            producer, other = await self.make(resume_grace=0.3), await self.make(resume_grace=0.3)
            reply = await self.start(producer, ScriptedSource(["a"] * 1000, delay=0.01))
            with producer.attach(reply):
                await asyncio.sleep(0.05)
            mirror = await other.open(reply.message_id)
            assert mirror is not None
            with other.attach(mirror):
                await asyncio.sleep(1.5)  # five graces
                assert not reply.done, "abandoned while a client followed it elsewhere"
            left = asyncio.get_running_loop().time()
            await until_done(reply)
            waited = asyncio.get_running_loop().time() - left
            assert reply.failure is not None and reply.failure.code == "reply_abandoned"
            assert 0.2 < waited < 2.0, waited
            await producer.close(0)
            await other.close(0)

        self.run(test)

    def test_nothing_is_left_behind_once_the_ttls_pass(self) -> None:
        async def test() -> None:
            store = await self.make(resume_ttl=0.5, conversation_ttl=0.5)
            replies: list[Reply] = []
            for index in range(20):
                source = ScriptedSource(["a"] * (1 if index % 2 else 500), delay=0.002)
                reply = await self.start(store, source)
                with store.attach(reply):
                    if index % 2 == 0:
                        await asyncio.sleep(0.005)  # leave early: abandoned
                    else:
                        await until_done(reply)
                replies.append(reply)
            for reply in replies:
                await until_done(reply)
            await store.close(0)
            assert len(await self.keys(replies)) >= 3 * 20, "each reply: owner, meta, log"
            await asyncio.sleep(1.0)
            assert await self.keys(replies) == []

        self.run(test)

    def test_another_process_gets_the_usage_the_finish_reason_and_the_history(self) -> None:
        class Limited:
            """A model's reply cut by its token limit, with its usage."""

            async def stream(self, message: str, history: Sequence[Turn] = ()) -> AsyncGenerator[str | Finish, None]:
                yield "Bonjour"
                yield Finish("length", Usage(prompt_tokens=12, completion_tokens=1))

        async def test() -> None:
            producer, follower = await self.make(resume_grace=5), await self.make(resume_grace=5)
            reply = await until_done(await self.start(producer, Limited(), message="Say hello in French"))
            async with asyncio.timeout(2):
                while (mirror := await follower.open(reply.message_id)) is None or not mirror.done:
                    await asyncio.sleep(0.01)
            assert (mirror.finish_reason, mirror.usage) == ("length", Usage(12, 1))
            assert await follower.history(reply.conversation_id) == [Turn("Say hello in French", "Bonjour")]
            await producer.close(0)
            await follower.close(0)

        self.run(test)

    def test_an_unreachable_store_refuses_new_replies(self) -> None:
        async def test() -> None:
            from app.replies import StoreUnavailable

            store = ValkeyReplyStore(
                limits(),
                url="redis://127.0.0.1:1/0",
                password="x",
                conversation_ttl=60,
                producer_lease=LEASE,
                max_connections=2,
            )
            await store.begin()
            with pytest.raises(StoreUnavailable):
                await self.start(store, ScriptedSource(["a"]))
            with pytest.raises(StoreUnavailable):
                await store.open(new_id("msg"))
            await store.close(0)

        self.run(test)
