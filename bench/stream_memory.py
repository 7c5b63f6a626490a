"""Where an API process's memory per held stream goes: `make bench-memory`.

Runs the API under uvicorn on this host (one process, replies in memory,
the twin pacing each reply at one token a second), holds N streams open
from raw sockets, and prints:

- the process's resident memory per stream (RSS after minus before), from a
  run without tracing;
- from a second run under tracemalloc, the bytes per stream by the line that
  allocated them (the top entries), which is where to cut.

The figures are the API's alone: no nginx, no kernel buffers, no store (the
full benchmark, `make bench`, measures those through the real stack).
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "stream-memory-" + "0" * 32

# The server: the app under uvicorn, which on SIGUSR2 writes a tracemalloc
# snapshot's top lines (when tracing) to the file named by SNAPSHOT_TO.
SERVER = """
import os, signal, tracemalloc, uvicorn
def dump(*_):
    if not tracemalloc.is_tracing():
        return
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    lines = [(str(s.traceback[0]), s.size, s.count) for s in snapshot.statistics("lineno")]
    import json
    with open(os.environ["SNAPSHOT_TO"] + ".part", "w") as out:
        json.dump(lines, out)
    os.rename(os.environ["SNAPSHOT_TO"] + ".part", os.environ["SNAPSHOT_TO"])
signal.signal(signal.SIGUSR2, dump)
uvicorn.run("app.main:app", host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning",
            timeout_graceful_shutdown=1)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def token() -> str:
    env = {**os.environ, "CHAT_AUTH_SECRET": SECRET, "CHAT_REPLY_STORE": "memory"}
    done = subprocess.run(
        [sys.executable, "-m", "app.tokens", "--subject", "memory", "--ttl", "3600"],
        cwd=ROOT / "services" / "api", env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


async def hold(port: int, count: int, bearer: str) -> list[asyncio.StreamWriter]:
    body = json.dumps({"message": "/pace 1000 600"}).encode()
    request = (
        f"POST /api/chat/message/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bearer}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await reader.readuntil(b"event: token")  # the stream is open and flowing
        writers.append(writer)

    gate = asyncio.Semaphore(200)

    async def gated() -> None:
        async with gate:
            await one()

    await asyncio.gather(*(gated() for _ in range(count)))
    return writers


def run(count: int, trace: bool, bearer: str) -> dict[str, object]:
    port = free_port()
    snapshot_to = Path(tempfile.mkdtemp()) / "snapshot.json"
    env = {
        **os.environ,
        "PORT": str(port),
        "SNAPSHOT_TO": str(snapshot_to),
        "CHAT_AUTH_SECRET": SECRET,
        "CHAT_REPLY_STORE": "memory",
        "CHAT_ENVIRONMENT": "development",  # the test hooks are refused in production
        "CHAT_TWIN_TEST_HOOKS": "true",
        "CHAT_MAX_REPLIES": str(count * 2),
        "CHAT_HEARTBEAT_SECONDS": "15",
        "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(),
        **({"PYTHONTRACEMALLOC": "1"} if trace else {}),
    }
    server = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT / "services" / "api", env=env)
    try:
        for _ in range(600):  # the import takes a while under tracemalloc
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)

        async def measure() -> dict[str, object]:
            # A few streams first: what the first ones allocate once (imports,
            # caches, pools) is not per stream.
            warm = await hold(port, 50, bearer)
            await asyncio.sleep(2)
            if trace:
                before_lines = await snapshot(server.pid, snapshot_to)
            before = rss_kib(server.pid)
            writers = await hold(port, count, bearer)
            await asyncio.sleep(3)
            after = rss_kib(server.pid)
            result: dict[str, object] = {"streams": count, "rss_kib_per_stream": (after - before) / count}
            if trace:
                after_lines = await snapshot(server.pid, snapshot_to)
                result["top"] = per_stream(before_lines, after_lines, count)
            for writer in [*warm, *writers]:
                writer.close()
            return result

        return asyncio.run(measure())
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


async def snapshot(pid: int, path: Path) -> list[list[object]]:
    """The server's tracemalloc statistics, taken now (a few seconds for a large heap)."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    for _ in range(600):
        await asyncio.sleep(0.1)
        if path.exists():
            lines: list[list[object]] = json.loads(path.read_text())
            return lines
    raise TimeoutError("no tracemalloc snapshot from the server within 60 s")


def per_stream(before: list[list[object]], after: list[list[object]], count: int) -> list[tuple[str, float]]:
    """Bytes per stream by allocating line: after minus before, largest first."""
    old = {str(line): int(size) for line, size, _ in before}  # type: ignore[call-overload]
    grown = [(str(line), (int(size) - old.get(str(line), 0)) / count) for line, size, _ in after]  # type: ignore[call-overload]
    grown.sort(key=lambda item: -item[1])
    return grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    bearer = token()
    plain = run(args.streams, trace=False, bearer=bearer)
    traced = run(args.streams, trace=True, bearer=bearer)
    top: list[tuple[str, float]] = traced["top"]  # type: ignore[assignment]
    total = sum(size for _, size in top if size > 0)
    print(f"{args.streams} streams held, one uvicorn process, Python {sys.version.split()[0]}")
    print(f"resident memory per stream: {plain['rss_kib_per_stream']:.1f} KiB")
    print(f"traced by tracemalloc: {total / 1024:.1f} KiB per stream; the top {args.top} lines:")
    root = str(ROOT)
    for where, size in top[: args.top]:
        print(f"{size:9.0f} B  {where.replace(root + '/', '').replace(sys.prefix + '/', '')}")


if __name__ == "__main__":
    main()
