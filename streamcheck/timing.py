"""Arrival times of streamed events, and the verdict drawn from them.

The verdict compares times within one response, never against a wall-clock
budget: a streamed reply spreads its events over the generation time (one
network read each), a buffered one delivers them in one or a few bursts at
the end. On the reference machine the two differ by two orders of magnitude
(events 100-200 ms apart, against all of them within a millisecond).

Between the two lies coalesced delivery: the reply is passed on as it is
made, but a hop gathers a few events per write (Nagle's algorithm, a flush
interval, a minimum write size). It is judged by the delay it adds to a token
over the stream's own pacing, against a limit a reader does not notice.

A stream that ends without its closing event is judged by the silence before
the end, against the stream's own rhythm: a close after a silence longer than
any the stream had shown is an idle timeout, one within it is a cut.

A measurement can show several causes at once (a compressing hop in front of
a buffering one, a stream that was held and then cut); the verdict lists each,
in the order to fix them, under one headline kind.
"""

import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import accumulate, pairwise
from time import perf_counter

from streamcheck.sse import Event, Parser

# Reads closer together than this count as one burst. A streamed token event
# is followed by the next one only after the source's own pacing.
BURST_GAP_SECONDS = 0.010
# Streaming: at least this share of the token events came in reads of their own.
STREAMING_SHARE = 0.8
# Held, not passed on progressively: one burst carries at least this share of
# the tokens (the reply was held to its end, or until a buffer filled) ...
HELD_SHARE = 0.5
# ... or the median burst carries at least this many bytes: a buffer's release.
# The smallest common proxy buffers are 4 KB (nginx's proxy_buffer_size on most
# systems, Go's bufio); a batch that a timer or Nagle's algorithm gathers from
# small token events stays under one TCP segment (about 1.4 KB).
BUFFER_RELEASE_BYTES = 2048
# Coalesced delivery passes while no token is held longer than this beyond the
# stream's own pacing. 100 ms is the limit under which a response feels
# instantaneous (Miller 1968; Card, Moran and Newell 1983; Nielsen), and well
# under a reader's eye fixation (about 200-250 ms): text that keeps coming at
# that rate reads as continuous. It passes Linux's 40 ms delayed ACK and a
# 100 ms flush interval at a model's usual pace, and fails 200 ms batching.
MAX_ADDED_DELAY_SECONDS = 0.100
# A stream that ends without its closing event was closed by an idle timeout
# when the silence before the end is longer than every gap the path let
# through, longer than this many median gaps (or than the heartbeat interval,
# if that is shorter: a heartbeat fills any longer silence), and longer than
# IDLE_MIN_SECONDS.
IDLE_PACING_FACTOR = 2.0
# No idle timeout is set this short; the floor keeps a stream with no pacing
# of its own (one read, then the close) from calling a prompt close a timeout.
IDLE_MIN_SECONDS = 0.5
# Defaults that a measured idle cut is compared with, to name the likely timeout.
KNOWN_IDLE_TIMEOUTS = (
    (10.0, "Fastly's between_bytes_timeout"),
    (30.0, "CloudFront's origin response timeout"),
    (60.0, "nginx's proxy_read_timeout, the AWS ALB idle timeout, Varnish's between_bytes_timeout, Fly Proxy's"),
    (100.0, "Cloudflare's proxy read timeout"),
    (300.0, "Envoy's stream_idle_timeout"),
)
# Defaults of limits on a whole response, compared with a cut stream's length.
KNOWN_RESPONSE_LIMITS = ((15.0, "Envoy's route timeout"),)


class Kind(StrEnum):
    STREAMING = "streaming"
    COALESCED = "coalesced"  # passed on progressively, but a few events per write
    BUFFERED = "buffered"
    COMPRESSED = "compressed"  # buffered, and the body was compressed on the way
    IDLE_TIMEOUT = "idle_timeout"  # cut after a long silence: an idle timeout on the path
    CUT = "cut"  # the stream ended without its closing `end` or `error` event
    ERROR = "error"  # a non-200 status, an `error` event, or a failed request
    INCONCLUSIVE = "inconclusive"  # too few events to tell


# The order in which causes are fixed: compression first (a compressor holds
# output on any hop and hides what the hops behind it do), then holding, then
# timeouts (a hop that holds output holds the heartbeats too, so the hop
# after it sees a silence).
FIX_ORDER = (Kind.ERROR, Kind.COMPRESSED, Kind.BUFFERED, Kind.COALESCED, Kind.IDLE_TIMEOUT, Kind.CUT)


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
    comment_times: list[float] = field(default_factory=list)  # when each comment arrived
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

    @property
    def encoding(self) -> str | None:
        """The body's Content-Encoding, if an intermediary (or the server) compressed it."""
        value = self.headers.get("content-encoding", "")
        return value if value and value != "identity" else None


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
        # Heartbeats are comments: their times measure the heartbeat interval.
        m.comment_times.extend([seconds] * (self._parser.comments - len(m.comment_times)))

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


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _gaps(times: Sequence[float]) -> list[float]:
    return [b - a for a, b in pairwise(times)]


# ---------------------------------------------------------------------------
# How the token events were grouped into reads


@dataclass(frozen=True)
class Batch:
    """Token events that arrived together, in one burst of reads."""

    seconds: float  # when its first event arrived
    events: int
    bytes: int  # body bytes read during the burst
    wait: float | None  # since the previous read of any kind (None: nothing was read before it)


def batches(m: Measurement) -> list[Batch]:
    reads = sorted(m.reads)
    read_times = [t for t, _ in reads]
    read_bytes = list(accumulate((n for _, n in reads), initial=0))  # before each read
    found = []
    for group in bursts(m.times("token")):
        first, last = group[0], group[-1]
        start, end = bisect_left(read_times, first), bisect_right(read_times, last)
        wait = first - read_times[start - 1] if start else None
        found.append(Batch(first, len(group), read_bytes[end] - read_bytes[start], wait))
    return found


@dataclass(frozen=True)
class Batching:
    """The batches' figures, and the delay the batching added to the stream."""

    batches: int
    events_per_read: float  # mean token events per batch
    largest_share: float  # of all token events, in the largest batch
    bytes_per_read: int  # median bytes per batch
    interval: float | None  # median time between the starts of consecutive batches
    pacing: float | None  # the stream's own pacing (see stream_pacing)
    added_delay: float | None  # the largest delay the batching added to a token (see added_delay)

    @property
    def held(self) -> bool:
        """Held rather than passed on progressively: most of the reply in one burst, or buffer-sized batches."""
        return self.largest_share >= HELD_SHARE or self.bytes_per_read >= BUFFER_RELEASE_BYTES


def stream_pacing(found: Sequence[Batch]) -> float | None:
    """The source's own time per token, from the batches after the first.

    A batch of n events that came w seconds after the previous read holds w
    seconds of generation: w / n per token. The median ignores a pause of the
    model. The first batch is left out: its wait includes the time to the
    first token (thinking), which is not pacing.
    """
    return _median([b.wait / b.events for b in found[1:] if b.wait is not None])


def added_delay(batch: Batch, pacing: float) -> float:
    """How much longer than its pacing the stream stalled before this batch.

    Its first token came ``wait`` after the previous read instead of one
    pacing after it: ``wait - pacing``. No more than the time the source took
    to make the batch's other tokens, ``(n - 1) * pacing``, so a pause of the
    model itself is not charged to the path. A token in a read of its own
    was not held at all.
    """
    if batch.events < 2 or batch.wait is None:
        return 0.0
    return max(0.0, min(batch.wait - pacing, (batch.events - 1) * pacing))


def batching(m: Measurement) -> Batching | None:
    found = batches(m)
    if not found:
        return None
    tokens = sum(b.events for b in found)
    pacing = stream_pacing(found)
    return Batching(
        batches=len(found),
        events_per_read=round(tokens / len(found), 2),
        largest_share=round(max(b.events for b in found) / tokens, 3),
        bytes_per_read=int(statistics.median(b.bytes for b in found)),
        interval=_median(_gaps([b.seconds for b in found])),
        pacing=pacing,
        added_delay=None if pacing is None else max(added_delay(b, pacing) for b in found),
    )


# ---------------------------------------------------------------------------
# The silence before a stream that ended without its closing event


@dataclass(frozen=True)
class Silence:
    """The silence before the end, and the stream's own rhythm to judge it by."""

    seconds: float  # from the last read to the end
    median_gap: float | None  # between reads, heartbeats included
    longest_gap: float | None  # the longest silence the path let through
    heartbeat: float | None  # measured: the median interval between `: ping` comments
    declared_heartbeat: float | None  # --heartbeat-seconds: the interval the API is set to
    # How long a hop that batches held the last data back (its added delay):
    # the silence the timed-out hop saw began that much before the last read.
    held_back: float = 0.0

    @property
    def expected_heartbeat(self) -> float | None:
        """The heartbeat interval: measured when heartbeats came, else as declared (0 declares them off)."""
        return self.heartbeat if self.heartbeat is not None else (self.declared_heartbeat or None)

    @property
    def threshold(self) -> float:
        """A silence longer than this is not the stream's own: the path timed it out.

        The stream's own silences last a few median gaps, and never longer than
        a heartbeat interval (a heartbeat fills any longer one); a silence the
        path already let through is not its timeout either.
        """
        own = IDLE_PACING_FACTOR * (self.median_gap or 0.0)
        if self.expected_heartbeat is not None:
            own = min(own, self.expected_heartbeat)
        return max(IDLE_MIN_SECONDS, own, self.longest_gap or 0.0)

    @property
    def at_source(self) -> float:
        """The silence the hops saw: from when the last data left the source."""
        return self.seconds + self.held_back

    @property
    def idle(self) -> bool:
        return self.at_source > self.threshold


def silence(m: Measurement, heartbeat_seconds: float | None = None, pattern: Batching | None = None) -> Silence:
    """The silence before the end. Behind a hop that coalesces (not one that
    holds the reply: its release tells nothing of when the source fell
    silent), the last batch left the source up to the hop's added delay
    before it arrived, so an idle timeout measured here looks that much
    shorter: HAProxy's 200 ms batching in front of an 800 ms timeout shows
    about 0.6 s."""
    read_times = sorted(t for t, _ in m.reads)
    gaps = _gaps(read_times)
    return Silence(
        seconds=m.total_seconds - (read_times[-1] if read_times else 0.0),
        median_gap=_median(gaps),
        longest_gap=max(gaps) if gaps else None,
        heartbeat=_median(_gaps(sorted(m.comment_times))),
        declared_heartbeat=heartbeat_seconds,
        held_back=pattern.added_delay if pattern and not pattern.held and pattern.added_delay else 0.0,
    )


def _about(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def _known(seconds: float, known: tuple[tuple[float, str], ...]) -> str:
    """The defaults within 10 % of a measured time, as a parenthesis."""
    found = [(value, name) for value, name in known if abs(seconds - value) <= 0.1 * value]
    return f" ({found[0][0]:g} s is the default of {found[0][1]})" if found else ""


def likely_timeout(seconds: float) -> str:
    return f"an idle or read timeout of about {_about(seconds)} on the path{_known(seconds, KNOWN_IDLE_TIMEOUTS)}"


def _heartbeat_advice(s: Silence) -> str:
    """What the heartbeats tell about the idle cut, and what to change."""
    if s.heartbeat is not None:
        return (
            f"heartbeats came every {s.heartbeat:.1f} s, then none for {s.at_source:.1f} s: the source or a hop "
            "stopped sending them"
        )
    if s.declared_heartbeat == 0:
        return f"heartbeats are off: turn them on, more often than every {_about(s.at_source)}"
    if s.declared_heartbeat is not None and s.at_source < s.declared_heartbeat:
        return (
            f"it is shorter than the heartbeat interval ({s.declared_heartbeat:g} s), so heartbeats cannot keep "
            f"the stream open: send them more often than every {_about(s.at_source)}, or raise that timeout"
        )
    if s.declared_heartbeat is not None:
        return (
            f"no heartbeat arrived in {s.at_source:.1f} s although one is due every {s.declared_heartbeat:g} s: "
            "heartbeats are off, or a hop holds them"
        )
    return f"no heartbeat seen: send them more often than every {_about(s.at_source)} (--heartbeat-seconds)"


def _idle_reason(s: Silence) -> str:
    rhythm = []
    if s.longest_gap is not None:
        rhythm.append(f"longer than any earlier silence ({s.longest_gap:.2f} s)")
    if s.median_gap:
        rhythm.append(f"{s.at_source / s.median_gap:.0f} times its median gap ({s.median_gap * 1000:.0f} ms)")
    compared = f", {' and '.join(rhythm)}" if rhythm else ""
    held = ""
    if s.held_back:
        held = f" ({s.seconds:.2f} s seen here, {s.held_back:.2f} s before it held back by a hop's batching)"
    return (
        f"the stream was cut after {s.at_source:.1f} s without data{held}{compared}: {likely_timeout(s.at_source)}; "
        f"{_heartbeat_advice(s)}"
    )


def _cut_reason(m: Measurement, s: Silence) -> str:
    cause = f" ({m.failure})" if m.failure else ""
    held = f", {s.held_back:.2f} s more before a hop's batching" if s.held_back else ""
    rhythm = f" (threshold for an idle cut: {s.threshold:.2f} s{held})"
    limit = _known(m.total_seconds, KNOWN_RESPONSE_LIMITS)
    length = f"; cut {_about(m.total_seconds)} after the request{limit}" if limit else ""
    return (
        f"the stream ended without an end or error event{cause}, {s.seconds:.2f} s after its last data, "
        f"within its own rhythm{rhythm}{length}"
    )


# ---------------------------------------------------------------------------
# The verdict


@dataclass(frozen=True)
class Cause:
    """One thing wrong on the path (or the one thing right), with what shows it."""

    kind: Kind
    reason: str


@dataclass(frozen=True)
class Verdict:
    kind: Kind  # the headline, one of the names callers have always checked
    reason: str
    events: int
    bursts: int
    spread: float  # (last token - first token) / (last token - request sent), for reports
    causes: tuple[Cause, ...] = ()  # every cause found, in the order to fix them
    batching: Batching | None = None
    silence: Silence | None = None  # for a stream that ended without its closing event
    max_added_delay: float = MAX_ADDED_DELAY_SECONDS
    notes: tuple[str, ...] = ()

    @property
    def streaming(self) -> bool:
        return self.kind is Kind.STREAMING

    @property
    def within_limit(self) -> bool:
        """The batching added no more delay to any token than the limit."""
        added = self.batching.added_delay if self.batching else None
        return added is not None and added <= self.max_added_delay

    @property
    def passed(self) -> bool:
        """What a pipeline gates on: the reply streamed, or came in batches too small to notice."""
        return self.streaming or (self.kind is Kind.COALESCED and self.within_limit)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return tuple(c.kind for c in self.causes) or (self.kind,)


def _ordered(causes: Iterable[Cause]) -> tuple[Cause, ...]:
    return tuple(sorted(causes, key=lambda c: FIX_ORDER.index(c.kind)))


def _coalesced_reason(b: Batching, tokens: int, limit: float) -> str:
    interval = f" about {b.interval * 1000:.0f} ms apart" if b.interval is not None else ""
    added = ""
    if b.added_delay is not None and b.pacing is not None:
        added = (
            f"; a token is held up to {b.added_delay * 1000:.0f} ms beyond the stream's own pacing of "
            f"{b.pacing * 1000:.0f} ms (limit {limit * 1000:.0f} ms)"
        )
    return (
        f"{tokens} events in {b.batches} reads{interval}, {b.events_per_read:g} events "
        f"(about {b.bytes_per_read} bytes) per read: passed on as made, a few at a time{added}"
    )


def _buffered_reason(b: Batching, tokens: int, compressed: bool) -> str:
    why = f"{tokens} events in only {_plural(b.batches, 'burst')}"
    if b.largest_share >= HELD_SHARE:
        why += f", {b.largest_share:.0%} of them in one"
    else:
        why += f" of about {b.bytes_per_read} bytes each, a buffer's size"
    if compressed:
        why += "; with compression on, whether the compressor alone held them shows once it is off"
    return why


def delivery_causes(m: Measurement, b: Batching | None, *, min_events: int, limit: float) -> tuple[Cause, ...]:
    """What held the token events on the way, in the order to fix it; nothing if they streamed.

    A compressed body that was held has two causes: the compression (the
    header proves it, and a compressor holds output unless its hop flushes
    every write) and the holding itself (some hop did not flush: the
    compressing one, or another behind it). Both need fixing.
    """
    tokens = len(m.times("token"))
    if b is None or tokens < min_events or b.batches >= STREAMING_SHARE * tokens:
        return ()
    found = []
    if m.encoding:
        found.append(Cause(Kind.COMPRESSED, f"the body was compressed ({m.encoding}) by an intermediary"))
    if b.held:
        found.append(Cause(Kind.BUFFERED, _buffered_reason(b, tokens, m.encoding is not None)))
    else:
        found.append(Cause(Kind.COALESCED, _coalesced_reason(b, tokens, limit)))
    return tuple(found)


def _headline(held: tuple[Cause, ...]) -> Cause:
    """One kind for callers that check one: compressed stays the name of a compressed, held reply."""
    kinds = [c.kind for c in held]
    reason = "; ".join(c.reason for c in reversed(held))
    if Kind.BUFFERED in kinds and Kind.COMPRESSED in kinds:
        return Cause(Kind.COMPRESSED, reason)
    return Cause(kinds[-1], reason)


def _ended_early(m: Measurement, heartbeat_seconds: float | None, pattern: Batching | None) -> tuple[Cause, Silence]:
    s = silence(m, heartbeat_seconds, pattern)
    if s.idle:
        return Cause(Kind.IDLE_TIMEOUT, _idle_reason(s)), s
    return Cause(Kind.CUT, _cut_reason(m, s)), s


def _notes(kind: Kind, m: Measurement, b: Batching | None, limit: float) -> tuple[str, ...]:
    notes = []
    if kind is Kind.STREAMING and m.encoding:
        notes.append(
            f"the body is compressed ({m.encoding}), yet every hop flushed each event; compression still "
            "risks buffering on another path"
        )
    if kind is Kind.COALESCED and b is not None and b.added_delay is not None and b.added_delay <= limit:
        notes.append(
            f"coalesced within the limit: no token held more than {b.added_delay * 1000:.0f} ms beyond the "
            f"stream's pacing (--max-added-delay-ms {limit * 1000:.0f}); this passes"
        )
    return tuple(notes)


def classify(
    m: Measurement,
    *,
    min_events: int = 5,
    max_added_delay: float = MAX_ADDED_DELAY_SECONDS,
    heartbeat_seconds: float | None = None,
) -> Verdict:
    """Did the events of this response stream, come in batches, or arrive buffered?

    Streaming: most token events arrived in reads of their own, at least 80 %
    as many bursts as events. The time before the first token does not count
    against it: a model may think for a long time and then stream. Otherwise
    the reply was held (buffered, compressed) or passed on in small batches
    (coalesced, which passes within ``max_added_delay``).
    """
    times = m.times("token")
    groups = bursts(times)
    total = times[-1] if times else 0.0
    spread = (times[-1] - times[0]) / total if len(times) > 1 and total > 0 else 0.0
    pattern = batching(m)

    def verdict(head: Cause, causes: tuple[Cause, ...] = (), found: Silence | None = None) -> Verdict:
        return Verdict(
            head.kind,
            head.reason,
            len(times),
            len(groups),
            round(spread, 3),
            causes=causes or (head,),
            batching=pattern,
            silence=found,
            max_added_delay=max_added_delay,
            notes=_notes(head.kind, m, pattern, max_added_delay),
        )

    if m.failure and not m.arrivals:
        return verdict(Cause(Kind.ERROR, m.failure))
    if m.status not in (200, 1000):  # HTTP OK, or a WebSocket's normal closure
        return verdict(Cause(Kind.ERROR, f"status {m.status}"))
    held = delivery_causes(m, pattern, min_events=min_events, limit=max_added_delay)
    if m.closing_event == "error":
        error = Cause(Kind.ERROR, "the stream ended with an error event")
        return verdict(error, _ordered((error, *held)))
    if m.closing_event is None:
        end, found = _ended_early(m, heartbeat_seconds, pattern)
        return verdict(end, _ordered((end, *held)), found)
    if len(times) < min_events:
        return verdict(Cause(Kind.INCONCLUSIVE, f"{len(times)} token events; need {min_events}"))
    if not held:
        return verdict(Cause(Kind.STREAMING, f"{len(times)} events in {len(groups)} separate reads"))
    return verdict(_headline(held), held)
