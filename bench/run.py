"""Run the benchmark: `make bench` (quick) or `make bench MODE=full`.

On the host: builds the stack with the bench overlay and runs it phase by
phase: the latency nginx adds, time to first token (idle and with streams
open), streams held and memory per stream, events per second, leaks after
abrupt disconnects, then each deployment side by side. A phase first waits
until the services it measures are healthy (and the API ready), then runs
each of its scenarios of bench/loadgen.py in the `loadgen` container; a
scenario that fails is recorded with its error and the next one runs. The
API's and nginx's healthchecks are followed through every phase.

Memory comes from docker stats and the kernel's socket memory
(/proc/net/sockstat) while streams are held, CPU time from each container's
cgroup around the throughput runs (bench/readings.py). Each scenario runs
through nginx and directly against the API in the same run, so the proxy's
cost is a measured ratio. results.json, report.md and PNG plots
(bench/report.py) go to bench/results/<time>/, whatever failed, also on
Ctrl-C.
"""

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from bench.readings import (
    PROJECT,
    Liveness,
    api_get,
    api_metrics,
    containers,
    cpu_seconds,
    kernel_tcp_mib,
    machine,
    memory_mib,
    metric_sum,
    store_clients,
)
from bench.report import GOALS, failures, markdown, plots

ROOT = Path(__file__).resolve().parents[1]
# Its own project, its ports on loopback (compose.bench.yaml): a stack
# started by `make up` keeps running.
COMPOSE = ["docker", "compose", "--project-name", PROJECT, "-f", "compose.yaml", "-f", "bench/compose.bench.yaml"]
ENV = {
    **os.environ,
    "CHAT_AUTH_SECRET": secrets.token_hex(32),
    "CHAT_VALKEY_PASSWORD": secrets.token_hex(32),
}
# The load client's bearer token, minted once by the API itself (app/tokens.py).
TOKEN: list[str] = []


class Deployment(NamedTuple):
    base: str  # its nginx, as the load client reaches it
    proxy: str  # service names
    api: str
    store: str | None = None

    @property
    def services(self) -> list[str]:
        return [service for service in (self.proxy, self.api, self.store) if service]


# The proxy's cost and the server's limits are measured on one process with
# replies in its memory (proxy-memory, api-memory), reached through nginx and
# directly; memory per stream on the deployment `make up` runs.
NGINX, API, GRANIAN = "http://proxy-memory:8080", "http://api-memory:8000", "http://api-granian:8000"
ONE_PROCESS = Deployment(NGINX, "proxy-memory", "api-memory")
DEFAULT = "Valkey store, 2 replicas"  # the deployment `make up` runs
DEPLOYMENTS = {
    "memory store, 1 process": ONE_PROCESS,
    DEFAULT: Deployment("http://nginx:8080", "nginx", "api", "valkey"),
}
API_SERVICES = ("api", "api-memory", "api-granian")
# Every API and nginx service, whose liveness the report follows.
WATCHED = (*API_SERVICES, "nginx", "proxy-memory")

# "hold": the steps of the ramp held on the default deployment; the last
# one is also held on the one process, through nginx and directly.
SIZES: dict[str, dict[str, Any]] = {
    "quick": {"pairs": 50, "background": 1000, "probes": 100, "hold": [1000, 2000], "hold_seconds": 10,
              "throughput": 500, "throughput_tokens": 100, "churn": 2000},
    "full": {"pairs": 500, "background": 5000, "probes": 500, "hold": [5000, 10000], "hold_seconds": 30,
             "throughput": 1000, "throughput_tokens": 200, "churn": 10000},
}  # fmt: skip

HEALTH_TIMEOUT = 300  # seconds for a phase's services to become healthy
ERROR_LINES = 25  # of a failure's traceback, kept in the results


# --- The stack -----------------------------------------------------------------


def compose(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*COMPOSE, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker compose {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def wait_healthy(services: Iterable[str]) -> float:
    """Start the services if they are not running, wait until Docker reports
    them healthy and each API container ready (/readyz): the seconds it took."""
    started = time.monotonic()
    compose("up", "--detach", "--wait", *services, timeout=HEALTH_TIMEOUT)
    apis = [service for service in services if service in API_SERVICES]
    for container in containers(*apis) if apis else []:
        # 503 while at capacity or restarting: wait, as for health.
        while True:
            try:
                api_get(container, "/readyz")
                break
            except Exception:
                if time.monotonic() - started > HEALTH_TIMEOUT:
                    raise
                time.sleep(1)
    return round(time.monotonic() - started, 1)


def loadgen(*args: str, on_holding: Callable[[int], None] | None = None) -> dict[str, Any]:
    command = [*COMPOSE, "--profile", "bench", "run", "--rm", "-T", "-e", f"BENCH_TOKEN={TOKEN[0]}",
               "loadgen", "python", "-m", "bench.loadgen", *args]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout and process.stderr
    errors: list[str] = []

    def watch_stderr() -> None:
        assert process.stderr
        for line in process.stderr:
            if line.startswith("HOLDING") and on_holding:
                on_holding(int(line.split()[1]))
            else:
                errors.append(line)

    watcher = threading.Thread(target=watch_stderr)
    watcher.start()
    stdout = process.stdout.read()
    process.wait()
    watcher.join()
    if process.returncode != 0:
        raise RuntimeError(f"loadgen {args[0]} failed:\n{''.join(errors[-20:])}")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


# --- Phases ----------------------------------------------------------------------


def failure() -> dict[str, Any]:
    """The exception being handled, as a result: the last lines of its traceback."""
    lines = traceback.format_exc().strip().splitlines()
    print(f"  failed: {lines[-1]}", flush=True)
    return {"failed": True, "error": "\n".join(lines[-ERROR_LINES:])}


def phase(
    results: dict[str, Any], path: tuple[str, ...], services: list[str], runs: dict[str, Callable[[], dict[str, Any]]]
) -> None:
    """One phase: wait until its services are healthy, then each run in turn,
    its result at results[path][run name]. A run that raises is recorded as
    {"failed": true, "error": ...} and the next one still runs; a phase whose
    services do not become healthy is recorded so as a whole. The phase's
    wait, duration and the liveness of every API and nginx container go to
    results["phases"]."""
    *within, name = path
    slot = results
    for key in within:
        slot = slot.setdefault(key, {})
    label = ": ".join(path)
    record: dict[str, Any] = {"path": list(path), "services": services}
    results["phases"][label] = record
    print(f"{label} ...", flush=True)
    started = time.monotonic()
    liveness = Liveness(WATCHED)
    try:
        with liveness:
            try:
                record["health_wait_seconds"] = wait_healthy(services)
            except BaseException as exc:
                slot[name] = failure()
                record["error"] = slot[name]["error"]
                if not isinstance(exc, Exception):
                    raise
                return
            data: dict[str, Any] = {}
            slot[name] = data
            for run_name, run in runs.items():
                print(f"  {run_name} ...", flush=True)
                try:
                    data[run_name] = run()
                except BaseException as exc:
                    data[run_name] = failure()
                    if not isinstance(exc, Exception):
                        raise  # Ctrl-C: record it, then stop
    finally:
        record["seconds"] = round(time.monotonic() - started, 1)
        record["liveness"] = liveness.summary()


def start_stack(results: dict[str, Any]) -> bool:
    """Build every image, start what the load client needs, mint its token."""
    record: dict[str, Any] = {"services": ["nginx"]}
    results["phases"]["stack"] = record
    started = time.monotonic()
    print("building and starting the stack ...", flush=True)
    try:
        # nginx's HTTPS port needs a certificate; the run makes its own (kept
        # with --keep, since the running proxy mounts it).
        ENV["TLS_CERT_DIR"] = tempfile.mkdtemp(prefix="chat-stream-bench-tls-")
        subprocess.run(["scripts/dev-certificate.sh", ENV["TLS_CERT_DIR"]], cwd=ROOT, check=True, capture_output=True)
        compose("build")
        compose("--profile", "bench", "build", "loadgen")
        record["build_seconds"] = round(time.monotonic() - started, 1)
        # The load client's `depends_on` starts nginx with every run: healthy first.
        record["health_wait_seconds"] = wait_healthy(["nginx"])
        TOKEN.append(compose("exec", "-T", "api", "python", "-m", "app.tokens", "--subject", "bench", "--ttl", "14400")
                     .stdout.strip())  # fmt: skip
    except BaseException as exc:
        record["error"] = failure()["error"]
        if not isinstance(exc, Exception):
            raise
        return False
    finally:
        record["seconds"] = round(time.monotonic() - started, 1)
    return True


# --- Runs ---------------------------------------------------------------------------


def ttft(base: str, background: int, size: dict[str, Any]) -> dict[str, Any]:
    """Time to first token with ``background`` other streams open (0: an idle stack)."""
    return loadgen("ttft", "--base", base, "--background", str(background), "--probes", str(size["probes"]))


def held_memory(deployment: Deployment, base: str, streams: int, seconds: float) -> dict[str, Any]:
    """Streams held through ``base`` (the deployment's nginx, or its API);
    memory of nginx, the API (every replica), the store (when there is one)
    and the kernel, per stream."""
    # Fresh processes: Python's allocator and nginx's pools keep their
    # high-water mark, which would hide what the next streams cost; replies
    # left in the store by the step before would expire mid-reading. The
    # store first, so the API starts against a store that answers.
    if deployment.store:
        compose("restart", deployment.store, timeout=HEALTH_TIMEOUT)
        wait_healthy([deployment.store])
    compose("restart", deployment.api, deployment.proxy, timeout=HEALTH_TIMEOUT)
    wait_healthy(deployment.services)
    roles = {"nginx": deployment.proxy, "api": deployment.api}
    if deployment.store:
        roles["valkey"] = deployment.store

    def reading() -> dict[str, float]:
        return {**memory_mib(roles), "kernel": kernel_tcp_mib()}

    before = reading()
    during: dict[str, float] = {}
    problems: list[str] = []
    clients: list[float] = []

    def on_holding(_: int) -> None:
        # On the thread that drains the load client's stderr: it must not die.
        time.sleep(2)  # let allocations settle
        try:
            during.update(reading())
            if deployment.store:
                clients.append(store_clients(deployment.store))
        except Exception as exc:
            problems.append(str(exc))

    result = loadgen(
        "hold", "--base", base, "--streams", str(streams), "--seconds", str(seconds), on_holding=on_holding
    )
    if not during:
        raise RuntimeError(f"no memory reading while the streams were held: {' '.join(problems) or 'never all open'}")
    opened = max(result["open"], 1)
    result.update(
        deployment=next(name for name, d in DEPLOYMENTS.items() if d == deployment),
        through="direct" if base != deployment.base else "nginx",
        memory_mib_before=before,
        memory_mib_held=during,
        kb_per_stream={key: (during[key] - before[key]) * 1024 / opened for key in before},
        store_clients=clients[0] if clients else None,
    )
    return result


def throughput(base: str, size: dict[str, Any], api: str, proxy: str | None = None) -> dict[str, Any]:
    """Events per second at full pace, and per CPU-second of the API (every
    replica) and of nginx (when the run goes through it)."""
    roles = {"api": api, **({"nginx": proxy} if proxy else {})}
    before = {role: cpu_seconds(service) for role, service in roles.items()}
    result = loadgen("throughput", "--base", base, "--streams", str(size["throughput"]),
                     "--tokens", str(size["throughput_tokens"]))  # fmt: skip
    for role, service in roles.items():
        spent = cpu_seconds(service) - before[role]
        result[f"{role}_cpu_seconds"] = spent
        result[f"events_per_{role}_cpu_second"] = result["events_delivered"] / spent if spent > 0 else None
    return result


def round_trips(service: str) -> float | None:
    # One observation of the store's latency histogram per request sent to
    # it; none at all from the memory store.
    metrics = api_metrics(service)
    return None if metrics is None else metric_sum(metrics, "chat_store_operation_duration_seconds_count") or 0.0


def store_throughput(deployment: Deployment, size: dict[str, Any]) -> dict[str, Any]:
    """Throughput through the deployment's nginx, and the store's round trips per token."""
    trips = round_trips(deployment.api)
    result = throughput(deployment.base, size, deployment.api, deployment.proxy)
    after = round_trips(deployment.api)
    delivered = max(result["events_delivered"], 1)
    result["round_trips_per_token"] = None if trips is None or after is None else (after - trips) / delivered
    return result


def churn(size: dict[str, Any]) -> dict[str, Any]:
    """Open-then-abort cycles through nginx: streams and generations left
    open after, and memory against before."""
    roles = {"api": ONE_PROCESS.api, "nginx": ONE_PROCESS.proxy}
    before = memory_mib(roles)
    result = loadgen("churn", "--base", NGINX, "--cycles", str(size["churn"]))
    time.sleep(3)
    metrics = api_metrics(ONE_PROCESS.api)
    result.update(
        memory_mib_before=before,
        memory_mib_after=memory_mib(roles),
        active_streams=metric_sum(metrics, "chat_active_streams"),
        running_generations=metric_sum(metrics, "chat_running_generations"),
    )
    return result


def run(results: dict[str, Any], size: dict[str, Any], only_stores: bool = False) -> None:
    """Every phase in turn, each with the services it measures."""
    one = ONE_PROCESS.services
    if not only_stores:
        phase(results, ("latency",), one, {
            f"{pairs}_streams": partial(loadgen, "latency", "--direct", API, "--proxied", NGINX, "--pairs", str(pairs))
            for pairs in (1, size["pairs"])
        })  # fmt: skip
        # The first time the API process holds this many streams, its heap
        # grows and its event loop pauses once for about 0.3 s (measured: the
        # pause hit whichever path ran first, nginx or direct). A first run,
        # reported apart as "direct (cold)", takes it; the two paths are then
        # compared on a warm process.
        background = size["background"]
        phase(results, ("ttft",), one, {
            "nginx, idle": partial(ttft, NGINX, 0, size),
            "direct (cold)": partial(ttft, API, background, size),
            "nginx": partial(ttft, NGINX, background, size),
            "direct": partial(ttft, API, background, size),
        })  # fmt: skip
        default, top, seconds = DEPLOYMENTS[DEFAULT], size["hold"][-1], size["hold_seconds"]
        phase(results, ("hold",), [*default.services, *one], {
            **{f"valkey_nginx_{n}": partial(held_memory, default, default.base, n, seconds) for n in size["hold"]},
            f"memory_nginx_{top}": partial(held_memory, ONE_PROCESS, NGINX, top, seconds),
            f"memory_direct_{top}": partial(held_memory, ONE_PROCESS, API, top, seconds),
        })  # fmt: skip
        phase(results, ("throughput",), one, {
            "nginx": partial(throughput, NGINX, size, ONE_PROCESS.api, ONE_PROCESS.proxy),
            "direct": partial(throughput, API, size, ONE_PROCESS.api),
        })  # fmt: skip
        # The alternative server, a phase of its own: should it not start,
        # the rest is measured all the same.
        phase(results, ("granian",), ["api-granian"], {"direct": partial(throughput, GRANIAN, size, "api-granian")})
        phase(results, ("churn",), one, {"nginx": partial(churn, size)})
    for name, d in DEPLOYMENTS.items():
        phase(results, ("stores", name), d.services, {
            "throughput": partial(store_throughput, d, size),
            "ttft_idle": partial(ttft, d.base, 0, size),
            "ttft": partial(ttft, d.base, size["background"], size),
            "hold": partial(held_memory, d, d.base, size["hold"][0], size["hold_seconds"]),
        })  # fmt: skip


def write(results: dict[str, Any], folder: Path) -> None:
    """results.json first, then report.md and the plots: whatever went wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    try:
        report = markdown(results)
    except Exception:
        error = traceback.format_exc()
        report = f"# Benchmark\n\nNo report (results.json holds the figures):\n\n```\n{error}```\n"
    (folder / "report.md").write_text(report)
    try:
        plots(results, folder)
    except Exception as exc:
        print(f"no plots: {exc}", flush=True)
    print(report)
    print(f"written to {folder.relative_to(ROOT)}/ in {results['seconds']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=SIZES, default="quick")
    parser.add_argument("--only-stores", action="store_true", help="only the deployments side by side")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()

    started = time.monotonic()
    folder = ROOT / "bench" / "results" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results: dict[str, Any] = {"mode": args.mode, "machine": machine(), "goals": GOALS,
                               "default_deployment": DEFAULT, "phases": {}}  # fmt: skip
    try:
        if start_stack(results):
            run(results, SIZES[args.mode], args.only_stores)
    except KeyboardInterrupt:
        results["interrupted"] = True
    finally:
        results["seconds"] = round(time.monotonic() - started)
        write(results, folder)
        if not args.keep:
            with contextlib.suppress(KeyboardInterrupt):
                compose("down", "--remove-orphans", check=False)
    if results.get("interrupted") or failures(results):
        sys.exit(1)


if __name__ == "__main__":
    main()
