"""Arrival times of streamed events, and the verdict drawn from them.

The verdict compares times within one response, never against a wall-clock
budget: a streamed reply spreads its events over the generation time (one
network read each), a buffered one delivers them in one or a few bursts at
the end. On the reference machine the two differ by two orders of magnitude
(events 100-200 ms apart, against all of them within a millisecond).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from time import perf_counter

from streamcheck.sse import Event, Parser

# Reads closer together than this count as one burst. A streamed token event
# is followed by the next one only after the source's own pacing.
BURST_GAP_SECONDS = 0.010
# A stream cut after at least this much silence was most likely closed by an
# idle timeout (nginx proxy_read_timeout, a load balancer's idle timeout).
IDLE_CUT_SECONDS = 1.0


class Kind(StrEnum):
    STREAMING = "streaming"
    BUFFERED = "buffered"
    COMPRESSED = "compressed"  # buffered, and the body was compressed on the way
    IDLE_TIMEOUT = "idle_timeout"  # cut after a long silence: an idle timeout on the path
    CUT = "cut"  # the stream ended without its closing `end` or `error` event
    ERROR = "error"  # a non-200 status, an `error` event, or a failed request
    INCONCLUSIVE = "inconclusive"  # too few events to tell


@dataclass(frozen=True)
class Arrival:
    seconds: float  # since the request was sent
    event: Event


@dataclass
class Measurement:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    first_byte_seconds: float | None = None
    reads: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes) per network read
    arrivals: list[Arrival] = field(default_factory=list)
    body: bytes = b""
    comments: int = 0  # comment lines (heartbeats)
    total_seconds: float = 0.0  # until the body ended or reading stopped
    failure: str | None = None

    def events(self, name: str | None = None) -> list[Event]:
        return [a.event for a in self.arrivals if name is None or a.event.event == name]

    def times(self, name: str = "token") -> list[float]:
        return [a.seconds for a in self.arrivals if a.event.event == name]

    @property
    def closing_event(self) -> str | None:
        names = [a.event.event for a in self.arrivals if a.event.event in ("end", "error")]
        return names[-1] if names else None


class Recorder:
    """Feed it the body's network reads as they happen; it timestamps each event."""

    def __init__(self, started: float | None = None) -> None:
        self.started = perf_counter() if started is None else started
        self.measurement = Measurement()
        self._parser = Parser()
        self._body = bytearray()

    def now(self) -> float:
        return perf_counter() - self.started

    def read(self, chunk: bytes) -> None:
        if not chunk:
            return
        seconds = self.now()
        m = self.measurement
        if m.first_byte_seconds is None:
            m.first_byte_seconds = seconds
        m.reads.append((seconds, len(chunk)))
        self._body += chunk
        m.arrivals.extend(Arrival(seconds, event) for event in self._parser.feed(chunk))

    def consume(self, chunks: Iterable[bytes]) -> Iterator[Arrival]:
        """Record every chunk, yielding new arrivals (a test may act mid-stream)."""
        for chunk in chunks:
            before = len(self.measurement.arrivals)
            self.read(chunk)
            yield from self.measurement.arrivals[before:]

    def finish(self) -> Measurement:
        seconds = self.now()
        self.measurement.arrivals.extend(Arrival(seconds, e) for e in self._parser.close())
        self.measurement.body = bytes(self._body)
        self.measurement.comments = self._parser.comments
        self.measurement.total_seconds = seconds
        return self.measurement


def bursts(times: list[float], gap: float = BURST_GAP_SECONDS) -> list[list[float]]:
    groups: list[list[float]] = []
    for t in sorted(times):
        if groups and t - groups[-1][-1] < gap:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    events: int
    bursts: int
    spread: float  # (last token - first token) / (last token - request sent), for reports

    @property
    def streaming(self) -> bool:
        return self.kind is Kind.STREAMING


def classify(m: Measurement, *, min_events: int = 5) -> Verdict:
    """Did the events of this response stream, or arrive buffered?

    Streaming: most token events arrived in reads of their own, at least 80 %
    as many bursts as events. The time before the first token does not count
    against it: a model may think for a long time and then stream.
    """
    times = m.times("token")
    groups = bursts(times)
    total = times[-1] if times else 0.0
    spread = (times[-1] - times[0]) / total if len(times) > 1 and total > 0 else 0.0

    def verdict(kind: Kind, reason: str) -> Verdict:
        return Verdict(kind, reason, len(times), len(groups), round(spread, 3))

    if m.failure and not m.arrivals:
        return verdict(Kind.ERROR, m.failure)
    if m.status not in (200, 1000):  # HTTP OK, or a WebSocket's normal closure
        return verdict(Kind.ERROR, f"status {m.status}")
    if m.closing_event == "error":
        return verdict(Kind.ERROR, "the stream ended with an error event")
    if m.closing_event is None:
        silence = m.total_seconds - (m.reads[-1][0] if m.reads else 0.0)
        if silence >= IDLE_CUT_SECONDS:
            return verdict(Kind.IDLE_TIMEOUT, f"the stream was cut after {silence:.1f} s without data")
        cause = f" ({m.failure})" if m.failure else ""
        return verdict(Kind.CUT, f"the stream ended without an end or error event{cause}")
    if len(times) < min_events:
        return verdict(Kind.INCONCLUSIVE, f"{len(times)} token events; need {min_events}")
    if len(groups) >= 0.8 * len(times):
        return verdict(Kind.STREAMING, f"{len(times)} events in {len(groups)} separate reads")
    encoding = m.headers.get("content-encoding", "")
    why = f"{len(times)} events in only {len(groups)} bursts"
    if encoding and encoding != "identity":
        return verdict(Kind.COMPRESSED, f"{why}; body compressed ({encoding}) by an intermediary")
    return verdict(Kind.BUFFERED, why)
