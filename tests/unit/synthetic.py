"""Arrival sequences as the probe records them, made by rule instead of measured:
a source that makes one token every ``pacing`` seconds, and a path that passes
them on at once, every ``flush`` seconds, or all at the end."""

import math

from streamcheck.sse import Event
from streamcheck.timing import Arrival, Measurement

TOKEN_BYTES = 90  # one `id:/event: token/data:` event of a short token, as the API sends it


def made(tokens: int = 48, pacing: float = 0.05, first: float = 0.05) -> list[float]:
    """When the source makes each token: the first after ``first`` (thinking), then one per ``pacing``."""
    return [first + i * pacing for i in range(tokens)]


def flushed(times: list[float], every: float, offset: float = 0.0) -> list[float]:
    """Release times through a hop that writes what it holds every ``every`` seconds."""
    return [offset + math.ceil(round((t - offset) / every, 9)) * every for t in times]


def stream(
    token_times: list[float],
    *,
    start: float = 0.005,
    closing: str | None = "end",
    ended: float | None = None,
    headers: dict[str, str] | None = None,
    token_bytes: int = TOKEN_BYTES,
    heartbeats: list[float] | None = None,
    status: int = 200,
) -> Measurement:
    """A measurement with one read per distinct arrival time, carrying every event that arrived then.

    ``ended`` is when the body ended (default: with the last read). Heartbeats are
    comments in reads of their own.
    """
    arrivals = [Arrival(start, Event("start", "{}"))]
    arrivals += [Arrival(t, Event("token", "{}", id=f"m:{i}")) for i, t in enumerate(token_times)]
    if closing:
        arrivals.append(Arrival(max([start, *token_times]), Event(closing, "{}")))
    sizes: dict[float, int] = {}
    for a in arrivals:
        sizes[a.seconds] = sizes.get(a.seconds, 0) + (token_bytes if a.event.event == "token" else 40)
    for t in heartbeats or []:
        sizes[t] = sizes.get(t, 0) + 8
    reads = sorted(sizes.items())
    return Measurement(
        status=status,
        headers=headers or {},
        first_byte_seconds=reads[0][0],
        reads=reads,
        arrivals=sorted(arrivals, key=lambda a: a.seconds),
        comments=len(heartbeats or []),
        comment_times=sorted(heartbeats or []),
        total_seconds=ended if ended is not None else reads[-1][0],
    )
