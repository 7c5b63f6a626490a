"""The streams a process has open, and the one timer that serves them all.

A stream needs more than its events: a heartbeat when it has sent nothing
for a while, a limit on how long one send may wait (a client that stopped
reading must not pin memory), and a last event when the server begins to
stop. sse-starlette gave each stream a task for each of those (and one for
the disconnect), each with its own timer: an API process held 64 KiB a
stream with them, 37 KiB without (`make bench-memory`, 2,000 streams;
README, "Performance"). Here one timer a process, a tick every half second
(or less), walks the open streams and does all three for every stream at
once:

- heartbeats: a stream that has sent nothing for ``heartbeat`` seconds is
  woken with ``heartbeat_due`` set, and writes a comment line;
- send timeouts: a stream whose send has waited ``send_timeout`` seconds is
  cancelled (its response drops the connection: app.sse_response);
- shutdown: from the moment the server begins to stop
  (:func:`app.shutdown.shutting_down`), every stream is woken to send its
  last event; one still open ``shutdown_send`` seconds later is cancelled.

Times are the tick's clock (:attr:`OpenStreams.now`), read by a stream for
free on every event; a heartbeat or a timeout comes up to one tick late.
"""

import asyncio
from types import TracebackType

from app.shutdown import shutting_down

TICK_SECONDS = 0.5  # at most; shorter for heartbeats or timeouts under a second


class OpenStream:
    """One open stream, as the tick sees it, and its wake-up signal.

    The signal is an :class:`asyncio.Event` without what an Event keeps for
    many waiters (a deque of futures): a stream has one waiter, itself.
    """

    __slots__ = (
        "_flag",
        "_streams",
        "_waiter",
        "cancelled_for",
        "disconnected",
        "heartbeat_due",
        "last_sent",
        "sending_since",
        "sse",
        "task",
    )

    def __init__(self, streams: "OpenStreams", *, sse: bool) -> None:
        self._streams = streams
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None
        # An SSE stream gets heartbeats and a last event on shutdown; a
        # WebSocket has the protocol's pings, and uvicorn's close frame
        # (1012) on shutdown.
        self.sse = sse
        self.task: asyncio.Task[object] | None = None  # what a timeout cancels
        self.last_sent = streams.now
        self.sending_since: float | None = None
        self.heartbeat_due = False
        self.disconnected = False  # the client left (set by the response)
        self.cancelled_for: str | None = None  # "send_timeout" or "shutdown"

    # ---- the signal ---------------------------------------------------------

    def set(self) -> None:
        """Wake the stream (a token came, the reply ended, a timer fired)."""
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        if self._flag:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # ---- open while the response runs -----------------------------------------

    def __enter__(self) -> "OpenStream":
        self._streams._add(self)
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._streams._remove(self)

    # ---- what the response records --------------------------------------------

    @property
    def send_timeout(self) -> float:
        return self._streams.send_timeout

    @property
    def shutting_down(self) -> bool:
        """Whether to end with ``server_shutdown`` now."""
        return self.sse and self._streams.shutting_down

    def sending(self) -> None:
        self.sending_since = self._streams.now

    def sent(self) -> None:
        self.sending_since = None
        self.last_sent = self._streams.now
        self.heartbeat_due = False


class OpenStreams:
    """The process's open streams; ticks while there is one."""

    def __init__(self, *, heartbeat: float, send_timeout: float, shutdown_send: float) -> None:
        self.heartbeat = heartbeat  # 0: none
        self.send_timeout = send_timeout  # 0: no limit
        self.shutdown_send = shutdown_send
        self.tick = min([TICK_SECONDS, *(limit / 2 for limit in (heartbeat, send_timeout) if limit > 0)])
        self._open: set[OpenStream] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.now = 0.0
        self.shutting_down = False
        self._shutdown_at = 0.0

    def __len__(self) -> int:
        return len(self._open)

    def stream(self, *, sse: bool) -> OpenStream:
        """A stream of this process, open (served by the tick) in its ``with`` block."""
        return OpenStream(self, sse=sse)

    def _add(self, stream: OpenStream) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self.now = loop.time()
            self._timer = loop.call_at(self.now + self.tick, self._tick)
        stream.last_sent = self.now
        self._open.add(stream)

    def _remove(self, stream: OpenStream) -> None:
        self._open.discard(stream)

    def _tick(self) -> None:
        assert self._loop is not None
        self.now = now = self._loop.time()
        if not self._open:
            self._timer = None  # the next stream starts it again
            return
        self._timer = self._loop.call_at(now + self.tick, self._tick)
        if not self.shutting_down and shutting_down():
            self.shutting_down, self._shutdown_at = True, now
            for stream in self._open:
                stream.set()
        if self.shutting_down and now - self._shutdown_at >= self.shutdown_send:
            for stream in self._open:
                if stream.sse:
                    self._cancel(stream, "shutdown")
            return
        heartbeat, send_timeout = self.heartbeat, self.send_timeout
        for stream in self._open:
            since = stream.sending_since
            if since is not None:
                # ``since`` is up to a tick old: a tick more, never early.
                if send_timeout and now - since >= send_timeout + self.tick:
                    self._cancel(stream, "send_timeout")
            elif heartbeat and stream.sse and now - stream.last_sent >= heartbeat:
                stream.heartbeat_due = True
                stream.set()

    @staticmethod
    def _cancel(stream: OpenStream, reason: str) -> None:
        if stream.cancelled_for is None and stream.task is not None:
            stream.cancelled_for = reason
            stream.task.cancel()
