"""An SSE load client that timestamps every event: one scenario per call.

    python -m bench.loadgen SCENARIO [options]     (prints one JSON object)

It runs inside the compose network (the `loadgen` service), so it reaches
nginx and the API directly, not through docker-proxy. It is asyncio with
aiohttp, spread over several processes, and reports its own CPU time so a
result can be checked for a saturated client. Events are parsed with
streamcheck's parser, the same one the tests and the probe use.

Scenarios (the API's "/pace MS N" test hook shapes each reply):
  latency     pairs of subscribers to one reply, one direct and one through
              nginx: the delay nginx adds, matched by event id
  ttft        time to first token while N other streams are open
  hold        N streams held open, 1 event/s each: were all events delivered?
              Prints "HOLDING" to stderr once all are open, for memory readings.
  throughput  N streams at full pace: events per second delivered
  churn       open-then-abort cycles, for leak checks
"""

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from streamcheck.sse import Parser

STREAM_PATH = "/api/chat/message/stream"


@dataclass
class Stream:
    status: int = 0
    message_id: str | None = None
    started: float | None = None  # time.monotonic() of the start event
    first_token: float | None = None  # seconds from request to first token
    tokens: list[tuple[int, float]] = field(default_factory=list)  # (index, monotonic time)
    closing: str | None = None
    error: str | None = None


async def stream(
    session: aiohttp.ClientSession,
    base: str,
    message: str,
    *,
    last_event_id: str | None = None,
    on_start: Callable[[Stream], None] | None = None,
    stop_after_tokens: int | None = None,
    result: Stream | None = None,
) -> Stream:
    """One request; ``result`` (when given) is filled as events arrive, so a
    cancelled stream still tells what it received."""
    result = result if result is not None else Stream()
    headers = {"Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    sent = time.monotonic()
    try:
        async with session.post(base + STREAM_PATH, json={"message": message}, headers=headers) as response:
            result.status = response.status
            parser = Parser()
            async for chunk in response.content.iter_any():
                now = time.monotonic()
                for event in parser.feed(chunk):
                    if event.event == "token":
                        result.tokens.append((int(str(event.id).rsplit(":", 1)[1]), now))
                        if result.first_token is None:
                            result.first_token = now - sent
                        if stop_after_tokens and len(result.tokens) >= stop_after_tokens:
                            response.close()  # abrupt: drop the connection
                            return result
                    elif event.event == "start":
                        result.message_id = json.loads(event.data)["message_id"]
                        result.started = now
                        if on_start:
                            on_start(result)
                    elif event.event in ("end", "error"):
                        result.closing = event.event
    except (TimeoutError, aiohttp.ClientError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def session() -> aiohttp.ClientSession:
    token = os.environ.get("BENCH_TOKEN")  # set by bench/run.py
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {token}"} if token else None,
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120),
    )


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)
    return {
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
        "n": len(ordered),
    }


# --- Streams held by worker processes -------------------------------------------


def _hold_worker(base: str, count: int, message: str, stagger: float, ready: Any, stop: Any, results: Any) -> None:
    async def run() -> None:
        started = 0
        all_started = asyncio.Event()

        def on_start(_: Stream) -> None:
            nonlocal started
            started += 1
            if started == count:
                all_started.set()

        async with session() as http:
            streams = [Stream() for _ in range(count)]

            async def open_one(i: int, result: Stream) -> Stream:
                await asyncio.sleep(i * stagger / count)
                return await stream(http, base, message, on_start=on_start, result=result)

            tasks = [asyncio.create_task(open_one(i, r)) for i, r in enumerate(streams)]
            with contextlib.suppress(TimeoutError):  # report how many opened, whatever happened
                await asyncio.wait_for(all_started.wait(), timeout=120)
            ready.put(started)
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
            began = time.monotonic()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            results.put(
                {
                    "started": started,
                    "tokens": [[t for _, t in s.tokens] for s in streams],
                    "indices": [[i for i, _ in s.tokens] for s in streams],
                    "errors": [s.error for s in streams if s.error],
                    "cpu_seconds": cpu_seconds(),
                    "stop_seconds": time.monotonic() - began,
                }
            )

    asyncio.run(run())


class Held:
    """N streams split over worker processes, open until stop().

    ``stagger``: their starts are spread evenly over this many seconds. Streams
    paced at one event a second and started together would all tick in the
    same instant, a burst no real audience makes; a request that lands on
    the burst waits behind every one of its events.
    """

    def __init__(self, base: str, count: int, message: str, processes: int, stagger: float = 0.0) -> None:
        context = multiprocessing.get_context("fork")
        self.ready, self.results, self.stop_event = context.Queue(), context.Queue(), context.Event()
        shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        # Daemonic: should the scenario fail (a worker never reports ready),
        # the workers end with it instead of holding their streams, and the
        # client's exit, open forever.
        self.workers = [
            context.Process(
                target=_hold_worker,
                args=(base, share, message, stagger, self.ready, self.stop_event, self.results),
                daemon=True,
            )
            for share in shares
            if share
        ]
        for worker in self.workers:
            worker.start()
        self.started = sum(self.ready.get(timeout=180) for _ in self.workers)

    def stop(self) -> list[dict[str, Any]]:
        self.stop_event.set()
        results = [self.results.get(timeout=120) for _ in self.workers]
        for worker in self.workers:
            worker.join(timeout=30)
        return results


# --- Scenarios ---------------------------------------------------------------


async def latency(direct: str, proxied: str, pairs: int, pace_ms: int, tokens: int) -> dict[str, Any]:
    """Two subscribers to one reply, one direct, one through nginx; per event, the difference."""

    async def pair(http: aiohttp.ClientSession) -> list[float]:
        started = asyncio.Event()
        ids: list[str] = []

        def on_start(lead: Stream) -> None:
            ids.append(str(lead.message_id))
            started.set()

        first = asyncio.create_task(stream(http, direct, f"/pace {pace_ms} {tokens}", on_start=on_start))
        await started.wait()
        follower = await stream(http, proxied, "follow", last_event_id=f"{ids[0]}:0")
        lead = await first
        direct_at = dict(lead.tokens)
        live_from = (follower.started or 0) + 0.01  # replayed history is not live
        return [
            (when - direct_at[index]) * 1000
            for index, when in follower.tokens
            if index in direct_at and direct_at[index] > live_from
        ]

    cpu, wall = cpu_seconds(), time.monotonic()
    async with session() as http:
        results = await asyncio.gather(*(pair(http) for _ in range(pairs)))
    added = [ms for result in results for ms in result]
    return {
        "pairs": pairs,
        "added_ms": percentiles(added),
        "samples_ms": added[:5000],
        "client_cpu": (cpu_seconds() - cpu) / (time.monotonic() - wall),
    }


async def ttft(base: str, background: int, probes: int, concurrency: int, processes: int) -> dict[str, Any]:
    held = Held(base, background, "/pace 1000 100000", processes, stagger=1.0) if background else None
    gate = asyncio.Semaphore(concurrency)
    cpu, wall = cpu_seconds(), time.monotonic()

    async def probe(http: aiohttp.ClientSession) -> Stream:
        async with gate:
            return await stream(http, base, "/pace 0 5", stop_after_tokens=1)

    async with session() as http:
        results = await asyncio.gather(*(probe(http) for _ in range(probes)))
    client_cpu = (cpu_seconds() - cpu) / (time.monotonic() - wall)
    held_results = held.stop() if held else []
    firsts = [r.first_token * 1000 for r in results if r.first_token is not None]
    return {
        "background_requested": background,
        "background_open": held.started if held else 0,
        "ttft_ms": percentiles(firsts),
        "probe_errors": sum(1 for r in results if r.first_token is None),
        "client_cpu": client_cpu,
        "background_cpu_seconds": sum(r["cpu_seconds"] for r in held_results),
    }


def hold(base: str, count: int, seconds: float, processes: int) -> dict[str, Any]:
    held = Held(base, count, f"/pace 1000 {int(seconds) + 600}", processes, stagger=1.0)
    print(f"HOLDING {held.started}", file=sys.stderr, flush=True)
    time.sleep(seconds)
    results = held.stop()
    complete = 0
    for worker in results:
        for indices in worker["indices"]:
            # 1 event/s: every index from 0 on, none missing, none repeated.
            if len(indices) >= int(seconds) - 1 and indices == list(range(len(indices))):
                complete += 1
    return {
        "requested": count,
        "open": held.started,
        "held_seconds": seconds,
        "all_events_delivered": complete,
        "delivered_pct": 100.0 * complete / count,
        "errors": sum(len(w["errors"]) for w in results),
        "client_cpu_seconds": sum(w["cpu_seconds"] for w in results),
    }


def throughput(base: str, count: int, pace_ms: int, tokens: int, processes: int) -> dict[str, Any]:
    held = Held(base, count, f"/pace {pace_ms} {tokens}", processes)
    time.sleep(tokens * pace_ms / 1000 + 2)
    results = held.stop()
    times = [t for worker in results for stream_times in worker["tokens"] for t in stream_times]
    window = max(times) - min(times) if times else 0.0
    return {
        "streams": count,
        "open": held.started,
        "events_expected": count * tokens,
        "events_delivered": len(times),
        "events_per_second": len(times) / window if window else 0.0,
        "window_seconds": window,
        "client_cpu_seconds": sum(w["cpu_seconds"] for w in results),
    }


async def churn(base: str, cycles: int, concurrency: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    cpu, wall = cpu_seconds(), time.monotonic()

    async def cycle(http: aiohttp.ClientSession) -> bool:
        async with gate:
            result = await stream(http, base, "/pace 20 200", stop_after_tokens=1)
            return result.first_token is not None

    async with session() as http:
        done = await asyncio.gather(*(cycle(http) for _ in range(cycles)))
    elapsed = time.monotonic() - wall
    return {
        "cycles": cycles,
        "completed": sum(done),
        "seconds": elapsed,
        "client_cpu": (cpu_seconds() - cpu) / elapsed,
    }


def main() -> None:
    # Thousands of sockets: take the whole file limit the container allows.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--direct", required=True)
    p.add_argument("--proxied", required=True)
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--pace-ms", type=int, default=20)
    p.add_argument("--tokens", type=int, default=50)
    p = sub.add_parser("ttft")
    p.add_argument("--base", required=True)
    p.add_argument("--background", type=int, default=1000)
    p.add_argument("--probes", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--processes", type=int, default=2)
    p = sub.add_parser("hold")
    p.add_argument("--base", required=True)
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--processes", type=int, default=2)
    p = sub.add_parser("throughput")
    p.add_argument("--base", required=True)
    p.add_argument("--streams", type=int, default=500)
    p.add_argument("--pace-ms", type=int, default=20)
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--processes", type=int, default=2)
    p = sub.add_parser("churn")
    p.add_argument("--base", required=True)
    p.add_argument("--cycles", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    if args.scenario == "latency":
        result = asyncio.run(latency(args.direct, args.proxied, args.pairs, args.pace_ms, args.tokens))
    elif args.scenario == "ttft":
        result = asyncio.run(ttft(args.base, args.background, args.probes, args.concurrency, args.processes))
    elif args.scenario == "hold":
        result = hold(args.base, args.streams, args.seconds, args.processes)
    elif args.scenario == "throughput":
        result = throughput(args.base, args.streams, args.pace_ms, args.tokens, args.processes)
    else:
        result = asyncio.run(churn(args.base, args.cycles, args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
