import asyncio

import pytest
from app.replies import ABANDONED, SHUTDOWN, SOURCE_FAILED, TOO_LARGE, Reply, ReplyStore, StoreFull
from scripted_sources import ScriptedSource


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_store(clock: Clock | None = None, **overrides: float) -> ReplyStore:
    options: dict[str, float] = {"resume_grace": 0, "resume_ttl": 60, "max_replies": 10, "max_reply_bytes": 1024}
    options.update(overrides)
    return ReplyStore(
        resume_grace=options["resume_grace"],
        resume_ttl=options["resume_ttl"],
        max_replies=int(options["max_replies"]),
        max_reply_bytes=int(options["max_reply_bytes"]),
        clock=clock or Clock(),
    )


async def until_done(reply: Reply) -> None:
    while not reply.done:
        await asyncio.sleep(0.001)


def start(store: ReplyStore, source: ScriptedSource, message_id: str = "m1") -> Reply:
    return store.start(source, "hi", conversation_id="c1", message_id=message_id)


def test_a_reply_collects_every_token_and_ends() -> None:
    async def run() -> Reply:
        reply = start(make_store(), ScriptedSource(["a", "b", "c"]))
        await until_done(reply)
        return reply

    reply = asyncio.run(run())
    assert (reply.tokens, reply.failure) == (["a", "b", "c"], None)


def test_a_failing_source_marks_the_reply_failed() -> None:
    async def run() -> Reply:
        reply = start(make_store(), ScriptedSource(["a", "b"], fail_after=1))
        await until_done(reply)
        return reply

    reply = asyncio.run(run())
    assert (reply.tokens, reply.failure) == (["a"], SOURCE_FAILED)


def test_a_reply_over_the_byte_limit_is_stopped() -> None:
    source = ScriptedSource(["x" * 600, "y" * 600, "z"])

    async def run() -> Reply:
        reply = start(make_store(max_reply_bytes=1024), source)
        await until_done(reply)
        return reply

    reply = asyncio.run(run())
    assert (reply.tokens, reply.failure, source.closed) == (["x" * 600], TOO_LARGE, True)


def test_when_the_last_client_leaves_without_grace_the_source_is_cancelled() -> None:
    source = ScriptedSource(["a"] * 100, delay=0.01)

    async def run() -> Reply:
        store = make_store(resume_grace=0)
        reply = start(store, source)
        with store.attach(reply):
            await asyncio.sleep(0.03)
        await until_done(reply)
        return reply

    reply = asyncio.run(run())
    assert reply.failure == ABANDONED and source.closed and len(reply.tokens) < 100


def test_a_client_that_returns_within_the_grace_keeps_the_reply_running() -> None:
    source = ScriptedSource(["a"] * 10, delay=0.01)

    async def run() -> Reply:
        store = make_store(resume_grace=0.05)
        reply = start(store, source)
        with store.attach(reply):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.03)  # away for less than the grace
        with store.attach(reply):
            await until_done(reply)
        return reply

    reply = asyncio.run(run())
    assert (reply.tokens, reply.failure) == (["a"] * 10, None)


def test_finished_replies_expire_after_the_ttl() -> None:
    clock = Clock()

    async def run() -> tuple[Reply | None, Reply | None]:
        store = make_store(clock, resume_ttl=60)
        reply = start(store, ScriptedSource(["a"]))
        await until_done(reply)
        clock.now += 59
        kept = store.get("m1")
        clock.now += 2
        return kept, store.get("m1")

    kept, expired = asyncio.run(run())
    assert kept is not None and expired is None


def test_a_full_store_evicts_finished_replies_and_refuses_when_all_are_running() -> None:
    async def run() -> None:
        store = make_store(max_replies=2)
        done = start(store, ScriptedSource(["a"]), "done")
        await until_done(done)
        start(store, ScriptedSource(["a"] * 100, delay=0.01), "running-1")
        start(store, ScriptedSource(["a"] * 100, delay=0.01), "running-2")  # evicts "done"
        assert store.get("done") is None and len(store) == 2
        with pytest.raises(StoreFull):
            start(store, ScriptedSource(["a"]), "one-too-many")
        await store.close()

    asyncio.run(run())


def test_close_cancels_running_replies_as_shutdown() -> None:
    source = ScriptedSource(["a"] * 100, delay=0.01)

    async def run() -> Reply:
        store = make_store()
        reply = start(store, source)
        await asyncio.sleep(0.02)
        await store.close()
        return reply

    reply = asyncio.run(run())
    assert (reply.failure, source.closed) == (SHUTDOWN, True)
