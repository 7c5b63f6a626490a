"""The process's one timer (app.open_streams) and the SSE response it serves
(app.sse_response): heartbeats, a client's departure, send timeouts and
shutdown, each served without a task of the stream's own."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from app.memory_store import MemoryReplyStore
from app.open_streams import TICK_SECONDS, OpenStreams
from app.sse_response import EventStreamResponse
from app.streaming import StreamRequest, reply_events
from scripted_sources import ScriptedSource
from store_contract import limits

Message = dict[str, Any]


class Client:
    """The ASGI side of one connection: records what is sent, and can leave
    (``receive`` then says http.disconnect) or stop reading (sends block)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.left = asyncio.Event()
        self.reading = True
        self._never = asyncio.Event()

    async def receive(self) -> Message:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            if not self.reading:
                await self._never.wait()
            self.bodies.append(message["body"])

    def events(self) -> list[str]:
        text = b"".join(self.bodies).decode()
        return [line.removeprefix("event: ") for line in text.split("\n") if line.startswith(("event: ", ": "))]


async def respond(
    streams: OpenStreams, source: ScriptedSource, client: Client, *, grace: float = 0
) -> tuple[asyncio.Task[None], MemoryReplyStore]:
    replies = MemoryReplyStore(limits(resume_grace=grace), conversation_ttl=60)
    reply = await replies.start(source, "hi", subject="s", conversation_id="c", message_id="m")
    stream = streams.stream(sse=True)
    request = StreamRequest(transport="sse", arrived_at=time.perf_counter())
    events = reply_events(replies, reply, request, stream=stream, from_index=0, retry_ms=0, shutdown_retry_ms=700)
    response = EventStreamResponse(events, stream)
    scope = {"type": "http", "method": "POST", "state": {"request_id": "r1"}}
    task = asyncio.get_running_loop().create_task(response(scope, client.receive, client.send))  # type: ignore[arg-type]
    return task, replies


async def a_reader_that_stops(streams: OpenStreams) -> asyncio.Task[None]:
    """A stream of a long, fast reply whose client stops reading after 0.2 s."""
    client = Client()
    task, _ = await respond(streams, ScriptedSource(["a"] * 1000, delay=0.01), client)
    await asyncio.sleep(0.2)
    client.reading = False
    return task


def test_a_silent_reply_gets_heartbeats_and_a_busy_one_none() -> None:
    async def run() -> tuple[list[str], list[str]]:
        streams = OpenStreams(heartbeat=1.0, send_timeout=0, shutdown_send=5)
        silent, busy = Client(), Client()
        silent_task, _ = await respond(streams, ScriptedSource(["a"], delay=60), silent)
        busy_task, _ = await respond(streams, ScriptedSource(["a"] * 400, delay=0.01), busy)
        await asyncio.sleep(3.2)
        silent.left.set()
        busy.left.set()
        await asyncio.wait_for(asyncio.gather(silent_task, busy_task), 5)
        return silent.events(), busy.events()

    silent, busy = asyncio.run(run())
    # 1 s apart, each up to a tick late: 2 or 3 in 3.2 s.
    assert silent[0] == "start" and silent[1:].count(": ping") in (2, 3), silent
    assert ": ping" not in busy


def test_a_client_that_leaves_ends_the_response_at_once_and_frees_the_reply() -> None:
    source = ScriptedSource(["a"] * 1000, delay=0.01)

    async def run() -> float:
        streams = OpenStreams(heartbeat=0, send_timeout=0, shutdown_send=5)
        client = Client()
        task, _ = await respond(streams, source, client)
        await asyncio.sleep(0.1)
        left = time.perf_counter()
        client.left.set()
        await asyncio.wait_for(task, 5)
        took = time.perf_counter() - left
        assert len(streams) == 0
        async with asyncio.timeout(5):
            while not source.closed:  # no resume grace: the generation is cancelled
                await asyncio.sleep(0.005)
        return took

    assert asyncio.run(run()) < 0.5  # a few loop turns; the tick is not waited for


def test_shutdown_ends_every_stream_with_a_retry_event(begin_shutdown: Callable[[], None]) -> None:
    clients_bodies: list[list[bytes]] = []

    async def run() -> tuple[list[list[str]], float]:
        streams = OpenStreams(heartbeat=0, send_timeout=0, shutdown_send=5)
        clients = [Client() for _ in range(3)]
        tasks = [(await respond(streams, ScriptedSource(["a"] * 100, delay=0.1), c))[0] for c in clients]
        await asyncio.sleep(0.3)
        begun = time.perf_counter()
        begin_shutdown()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        clients_bodies.append(clients[0].bodies)
        return [c.events() for c in clients], time.perf_counter() - begun

    events, took = asyncio.run(run())
    for names in events:
        assert names[0] == "start" and names[-1] == "error", names
    last = b"".join(clients_bodies[0]).decode().rstrip("\n").rsplit("\n\n", 1)[-1]
    assert '"code":"server_shutdown"' in last and last.endswith("retry: 700"), last
    assert took < 2 * TICK_SECONDS + 0.5  # at the next tick, not at the end of the replies (10 s)


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout() -> None:
    async def run() -> float:
        task = await a_reader_that_stops(OpenStreams(heartbeat=0, send_timeout=1.0, shutdown_send=5))
        stopped = time.perf_counter()
        await asyncio.wait_for(task, 5)  # returns: the task's cancellation was taken back
        return time.perf_counter() - stopped

    took = asyncio.run(run())
    assert 0.9 < took < 1.0 + 2 * TICK_SECONDS + 0.5


def test_at_shutdown_a_stream_that_cannot_send_its_last_event_is_cut_after_the_grace(
    begin_shutdown: Callable[[], None],
) -> None:
    async def run() -> float:
        task = await a_reader_that_stops(OpenStreams(heartbeat=0, send_timeout=0, shutdown_send=1.0))
        begun = time.perf_counter()
        begin_shutdown()
        await asyncio.wait_for(task, 5)
        return time.perf_counter() - begun

    took = asyncio.run(run())
    assert 0.9 < took < 1.0 + 2 * TICK_SECONDS + 0.5


def test_the_timer_runs_only_while_a_stream_is_open() -> None:
    async def run() -> tuple[bool, bool, bool]:
        streams = OpenStreams(heartbeat=1.0, send_timeout=0, shutdown_send=5)
        idle = streams._timer is None
        with streams.stream(sse=True):
            running = streams._timer is not None
        await asyncio.sleep(TICK_SECONDS * 2.5)
        return idle, running, streams._timer is None

    assert asyncio.run(run()) == (True, True, True)


def test_a_client_that_stops_reading_at_the_last_send_is_dropped_too() -> None:
    class StopsAtTheEnd(Client):
        async def send(self, message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.reading = False  # the buffer is full when the response would end
            await super().send(message)

    async def run() -> float:
        streams = OpenStreams(heartbeat=0, send_timeout=0.5, shutdown_send=5)
        client = StopsAtTheEnd()
        task, _ = await respond(streams, ScriptedSource(["a", "b"]), client)
        started = time.perf_counter()
        await asyncio.wait_for(task, 5)
        return time.perf_counter() - started

    assert asyncio.run(run()) < 0.5 + 2 * TICK_SECONDS + 0.5


def test_a_cancellation_from_outside_is_not_taken_for_the_timers() -> None:
    async def run() -> bool:
        streams = OpenStreams(heartbeat=0, send_timeout=0.5, shutdown_send=5)
        task = await a_reader_that_stops(streams)
        (stream,) = streams._open
        streams._cancel(stream, "send_timeout")  # the timer cuts the stream...
        task.cancel()  # ...and, in the same instant, the server cancels the request
        try:
            await asyncio.wait_for(task, 5)
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(run())
