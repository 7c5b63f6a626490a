"""Run the benchmark: `make bench` (quick, about 3 minutes) or `make bench MODE=full`.

On the host: brings the stack up with the bench overlay, runs each scenario
of bench/loadgen.py in the `loadgen` container, reads container memory
(docker stats) and kernel socket memory (/proc/net/sockstat) while streams
are held, and writes results.json, report.md and PNG plots to
bench/results/<time>/. Each scenario runs through nginx and directly against
the API in the same run, so the proxy's cost is a measured ratio.
"""

import argparse
import json
import os
import platform
import secrets
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Its own project, its ports on loopback (compose.bench.yaml): a stack
# started by `make up` keeps running.
COMPOSE = ["docker", "compose", "--project-name", "chat-stream-bench", "-f", "compose.yaml",
           "-f", "bench/compose.bench.yaml"]  # fmt: skip
ENV = {
    **os.environ,
    "CHAT_AUTH_SECRET": secrets.token_hex(32),
    "CHAT_VALKEY_PASSWORD": secrets.token_hex(32),
}
# The load client's bearer token, minted once by the API itself (app/tokens.py).
TOKEN: list[str] = []


# The proxy's cost and the server's limits are measured on one process with
# replies in its memory (proxy-memory, api-memory), reached through nginx and
# directly; the two deployments are compared in the "stores" section.
NGINX, API, GRANIAN = "http://proxy-memory:8080", "http://api-memory:8000", "http://api-granian:8000"
ONE_PROCESS = {"proxy": "proxy-memory", "api": "api-memory"}
# name: (proxy URL, services whose memory counts, the proxy's and API's service names)
DEPLOYMENTS: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "memory store, 1 process": (NGINX, ["proxy-memory", "api-memory"], ONE_PROCESS),
    "Valkey store, 2 replicas": ("http://nginx:8080", ["nginx", "api", "valkey"], {"proxy": "nginx", "api": "api"}),
}

SIZES: dict[str, dict[str, Any]] = {
    "quick": {"pairs": 50, "background": 1000, "probes": 100, "hold": [1000, 2000], "hold_seconds": 10,
              "throughput": 500, "throughput_tokens": 100, "churn": 2000},
    "full": {"pairs": 500, "background": 5000, "probes": 500, "hold": [5000, 10000], "hold_seconds": 30,
             "throughput": 1000, "throughput_tokens": 200, "churn": 10000},
}  # fmt: skip

GOALS = {
    "proxy_added_p50_ms": 0.3,
    "proxy_added_p99_ms": 2.0,
    "ttft_p99_ms": 20.0,
    "streams_held": 10_000,
    "kb_per_stream_total": 48.0,
    "kb_per_stream_nginx": 10.0,
    "events_per_second": 20_000,
}


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*COMPOSE, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker compose {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def loadgen(*args: str, on_holding: Any = None) -> dict[str, Any]:
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


def memory_mib(service: str) -> float:
    """Of every container (replica) of the service."""
    total = 0.0
    for container in compose("ps", "-q", service).stdout.split():
        usage = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container],
            capture_output=True, text=True, check=True,
        ).stdout.split("/")[0].strip()  # fmt: skip
        number, unit = float(usage[:-3]), usage[-3:]
        total += number * {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}[unit]
    return total


def kernel_tcp_mib() -> float:
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return 0.0


def api_metrics(service: str = "api-memory") -> dict[str, float]:
    """The API's metrics, summed over its replicas."""
    script = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode())"
    values: dict[str, float] = {}
    for container in compose("ps", "-q", service).stdout.split():
        text = subprocess.run(["docker", "exec", container, "python3", "-c", script], capture_output=True, text=True)
        for line in text.stdout.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = values.get(name, 0.0) + float(value)
    return values


def store_clients(service: str) -> float:
    """Connections Valkey has open (every API process's pool, reader and stop channel)."""
    (container,) = compose("ps", "-q", service).stdout.split()
    # valkey-cli 8.1 reads REDISCLI_AUTH (VALKEYCLI_AUTH only in later releases).
    auth = 'VALKEYCLI_AUTH="$VALKEY_PASSWORD" REDISCLI_AUTH="$VALKEY_PASSWORD"'
    info = subprocess.run(
        ["docker", "exec", container, "sh", "-c", f"{auth} valkey-cli info clients"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return float(next(line.split(":")[1] for line in info.splitlines() if line.startswith("connected_clients:")))


def metric_sum(metrics: dict[str, float], name: str) -> float:
    """A metric summed over its labels (-1 when absent)."""
    values = [v for k, v in metrics.items() if k == name or k.startswith(name + "{")]
    return sum(values) if values else -1


def round_trips(service: str) -> float:
    # One observation of the store's latency histogram per request sent to it.
    return metric_sum(api_metrics(service), "chat_store_operation_duration_seconds_count")


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "kernel": platform.release(),
        "docker": docker.stdout.strip(),
        "note": "load client, nginx and the API share these cores",
    }


def held_memory(
    base: str, streams: int, seconds: float, services: dict[str, str] = ONE_PROCESS, store: str | None = None
) -> dict[str, Any]:
    """Streams held through ``base``; memory of the proxy, the API (every
    replica), the store (when there is one) and the kernel, per stream."""
    # Fresh processes: Python's allocator and nginx's pools keep their
    # high-water mark, which would hide what the next streams cost.
    compose("restart", services["api"], services["proxy"])
    compose("up", "--detach", "--wait", services["api"], services["proxy"])
    readers = {"nginx": services["proxy"], "api": services["api"], **({"valkey": store} if store else {})}

    def reading() -> dict[str, float]:
        return {**{key: memory_mib(service) for key, service in readers.items()}, "kernel": kernel_tcp_mib()}

    before = reading()
    during: dict[str, float] = {}

    def on_holding(_: int) -> None:
        time.sleep(2)  # let allocations settle
        during.update(reading())
        if store:
            during["store_clients"] = store_clients(store)

    result = loadgen(
        "hold", "--base", base, "--streams", str(streams), "--seconds", str(seconds), on_holding=on_holding
    )
    opened = max(result["open"], 1)
    result["memory_mib_before"] = before
    result["memory_mib_held"] = during
    result["kb_per_stream"] = {key: (during.get(key, 0) - before[key]) * 1024 / opened for key in before}
    if "store_clients" in during:
        result["store_clients"] = during.pop("store_clients")
    return result


def run(mode: str, only_stores: bool = False) -> dict[str, Any]:
    size = SIZES[mode]
    results: dict[str, Any] = {"mode": mode, "machine": machine(), "goals": GOALS}
    if only_stores:
        results["stores"] = {name: store_figures(name, size) for name in DEPLOYMENTS}
        return results
    print("latency added by nginx, per event ...", flush=True)
    results["latency"] = {
        f"{pairs}_streams": loadgen("latency", "--direct", API, "--proxied", NGINX, "--pairs", str(pairs))
        for pairs in (1, size["pairs"])
    }
    print(f"time to first token with {size['background']} streams open ...", flush=True)
    # The first time the API process holds this many streams, its heap grows
    # and its event loop pauses once for about 0.3 s (measured: the pause hit
    # whichever path ran first, nginx or direct). A first run, reported apart
    # as "cold", takes it; the two paths are then compared on a warm process.
    results["ttft"] = {
        name: loadgen("ttft", "--base", base, "--background", str(size["background"]), "--probes", str(size["probes"]))
        for name, base in (("direct, cold", API), ("nginx", NGINX), ("direct", API))
    }
    print("streams held, and memory per stream ...", flush=True)
    results["hold"] = {f"nginx_{n}": held_memory(NGINX, n, size["hold_seconds"]) for n in size["hold"]}
    top = size["hold"][-1]
    results["hold"][f"direct_{top}"] = held_memory(API, top, size["hold_seconds"])
    print("events per second ...", flush=True)
    results["throughput"] = {
        name: loadgen("throughput", "--base", base, "--streams", str(size["throughput"]),
                      "--tokens", str(size["throughput_tokens"]))
        for name, base in (("nginx", NGINX), ("direct", API), ("direct_granian", GRANIAN))
    }  # fmt: skip
    print("leaks after abrupt disconnects ...", flush=True)
    baseline = {"api_mib": memory_mib("api-memory"), "nginx_mib": memory_mib("proxy-memory")}
    churn = loadgen("churn", "--base", NGINX, "--cycles", str(size["churn"]))
    time.sleep(3)
    metrics = api_metrics()
    churn.update(
        baseline=baseline,
        after={"api_mib": memory_mib("api-memory"), "nginx_mib": memory_mib("proxy-memory")},
        active_streams=metric_sum(metrics, "chat_active_streams"),
        running_generations=metric_sum(metrics, "chat_running_generations"),
    )
    results["churn"] = churn
    results["stores"] = {name: store_figures(name, size) for name in DEPLOYMENTS}
    return results


def store_figures(name: str, size: dict[str, Any]) -> dict[str, Any]:
    """One deployment, through its own nginx: events/s and the store's round
    trips per token, TTFT with streams open, streams held and memory per stream."""
    base, _, services = DEPLOYMENTS[name]
    store = "valkey" if services["api"] == "api" else None
    print(f"deployment: {name} ...", flush=True)
    trips = round_trips(services["api"])
    throughput = loadgen("throughput", "--base", base, "--streams", str(size["throughput"]),
                         "--tokens", str(size["throughput_tokens"]))  # fmt: skip
    trips = round_trips(services["api"]) - trips
    ttft = loadgen("ttft", "--base", base, "--background", str(size["background"]), "--probes", str(size["probes"]))
    held = held_memory(base, size["hold"][0], size["hold_seconds"], services, store)
    return {
        "events_per_second": throughput["events_per_second"],
        "round_trips_per_token": trips / max(throughput["events_delivered"], 1),
        "ttft_ms": ttft["ttft_ms"],
        "background_open": ttft["background_open"],
        "held": held["all_events_delivered"],
        "held_requested": held["requested"],
        "kb_per_stream": held["kb_per_stream"],
        "store_clients": held.get("store_clients"),
    }


def verdicts(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, figure, goal, verdict) rows."""
    rows = []

    def row(measure: str, value: float | None, goal: float, unit: str, lower_is_better: bool = True) -> None:
        if value is None:
            rows.append((measure, "-", f"{goal:g} {unit}", "not measured"))
            return
        met = value <= goal if lower_is_better else value >= goal
        gap = f"short by {abs(value - goal):.3g} {unit}" if not met else "met"
        rows.append((measure, f"{value:.3g} {unit}", f"{'<=' if lower_is_better else '>='} {goal:g} {unit}", gap))

    for name, latency in r["latency"].items():
        row(f"proxy adds p50, {name.replace('_', ' ')}", latency["added_ms"]["p50"], GOALS["proxy_added_p50_ms"], "ms")
        row(f"proxy adds p99, {name.replace('_', ' ')}", latency["added_ms"]["p99"], GOALS["proxy_added_p99_ms"], "ms")
    for name, ttft in r["ttft"].items():
        row(f"TTFT p99, {ttft['background_open']} open, {name}", ttft["ttft_ms"]["p99"], GOALS["ttft_p99_ms"], "ms")
    for name, held in r["hold"].items():
        if held["requested"] < GOALS["streams_held"]:
            rows.append((
                f"streams held with every event, {name}",
                f"{held['all_events_delivered']} of {held['requested']}",
                f">= {GOALS['streams_held']} streams",
                "a step of the ramp" if r["mode"] == "full" else f"quick; MODE=full goes to {GOALS['streams_held']}",
            ))  # fmt: skip
        else:
            row(f"streams held with every event, {name}", held["all_events_delivered"], GOALS["streams_held"],
                "streams", lower_is_better=False)  # fmt: skip
        per = held["kb_per_stream"]
        total = per["api"] + per["kernel"] + (per["nginx"] if name.startswith("nginx") else 0)
        row(f"memory per stream, total, {name}", total, GOALS["kb_per_stream_total"], "KB")
        if name.startswith("nginx"):
            row(f"memory per stream, nginx, {name}", per["nginx"], GOALS["kb_per_stream_nginx"], "KB")
    for name, t in r["throughput"].items():
        row(f"events/s end to end, {name}", t["events_per_second"], GOALS["events_per_second"], "events/s",
            lower_is_better=False)  # fmt: skip
    c = r["churn"]
    leak = "none" if c["active_streams"] == 0 and c["running_generations"] == 0 else "streams left open"
    rows.append((
        f"leaks after {c['cycles']} abrupt disconnects",
        f"{c['active_streams']:g} streams, {c['running_generations']:g} generations open; "
        f"API {c['baseline']['api_mib']:.0f} -> {c['after']['api_mib']:.0f} MiB",
        "0 open, memory back to baseline", "met" if leak == "none" else leak,
    ))  # fmt: skip
    return rows


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"# Benchmark ({r['mode']} mode)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"Docker {m['docker']} ({m['note']}).",
        "",
        "| measure | figure | goal | verdict |",
        "|---|---|---|---|",
    ]
    if "latency" in r:
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in verdicts(r)]
    lines += [
        "",
        "Deployments side by side, each through its own nginx (the rows above measure the first one):",
        "",
        "| deployment | events/s | TTFT p50 / p99, streams open | streams held, every event | memory per stream "
        "(proxy + API + store + kernel) | store round trips per token | store connections while held |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in r["stores"].items():
        kb = d["kb_per_stream"]
        parts = " + ".join(f"{kb[key]:.1f}" for key in ("nginx", "api", "valkey", "kernel") if key in kb)
        lines.append(
            f"| {name} | {d['events_per_second']:,.0f} | {d['ttft_ms']['p50']:.1f} / {d['ttft_ms']['p99']:.1f} ms,"
            f" {d['background_open']} | {d['held']} of {d['held_requested']} | {sum(kb.values()):.1f} KB ({parts}) |"
            f" {d['round_trips_per_token']:.3f} | {d['store_clients'] if d['store_clients'] is not None else '-'} |"
        )
    cpu = [t["client_cpu_seconds"] for t in r.get("throughput", {}).values()]
    lines += [
        "",
        f"Load client CPU during the throughput runs: {', '.join(f'{c:.1f}' for c in cpu)} core-seconds.",
        "The proxy's added delay is the difference of two arrival times taken by one client process; figures",
        "below about 0.1 ms (or negative) are within that client's timing noise.",
        "Memory per stream: container memory (docker stats) while the streams are held, minus before, after a",
        "restart of nginx and the API; kernel: TCP buffer memory (/proc/net/sockstat), near zero for idle streams.",
    ]
    return "\n".join(lines) + "\n"


def plots(r: dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    everything = sorted(ms for latency in r["latency"].values() for ms in latency["samples_ms"])
    # The central 99 %: a few samples far out are the client's own scheduling noise.
    span = (everything[len(everything) // 200], everything[-len(everything) // 200 - 1]) if everything else None
    for name, latency in r["latency"].items():
        if latency["samples_ms"]:
            axis.hist(latency["samples_ms"], bins=60, range=span, density=True, alpha=0.6,
                      label=name.replace("_", " "))  # fmt: skip
    axis.set(title="Delay added by nginx, per event (central 99 %)", xlabel="ms (through nginx - direct)",
             ylabel="share of events (density)")  # fmt: skip
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "latency.png", dpi=120)

    figure, axis = plt.subplots(figsize=(7, 4))
    held = {name: h for name, h in r["hold"].items() if name.startswith("nginx")}
    counts = [h["open"] for h in held.values()]
    for key in ("nginx", "api", "kernel"):
        axis.plot([0, *counts], [0, *[h["memory_mib_held"].get(key, 0) - h["memory_mib_before"][key]
                                      for h in held.values()]], marker="o", label=key)  # fmt: skip
    axis.set(title="Memory growth with open streams (through nginx)", xlabel="open streams", ylabel="MiB")
    axis.legend()
    figure.tight_layout()
    figure.savefig(folder / "memory.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=SIZES, default="quick")
    parser.add_argument("--only-stores", action="store_true", help="only the deployments side by side")
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()

    started = time.monotonic()
    print("building and starting the stack ...", flush=True)
    # nginx's HTTPS port needs a certificate; the run makes its own (kept
    # with --keep, since the running proxy mounts it).
    ENV["TLS_CERT_DIR"] = tempfile.mkdtemp(prefix="chat-stream-bench-tls-")
    subprocess.run(["scripts/dev-certificate.sh", ENV["TLS_CERT_DIR"]], cwd=ROOT, check=True, capture_output=True)
    compose("up", "--detach", "--build", "--wait")
    compose("--profile", "bench", "build", "loadgen")
    TOKEN.append(compose("exec", "-T", "api", "python", "-m", "app.tokens", "--subject", "bench", "--ttl", "14400")
                 .stdout.strip())  # fmt: skip
    try:
        results = run(args.mode, args.only_stores)
    finally:
        if not args.keep:
            compose("down", "--remove-orphans", check=False)
    results["seconds"] = round(time.monotonic() - started)
    folder = ROOT / "bench" / "results" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    report = markdown(results)
    (folder / "report.md").write_text(report)
    if "latency" in results:
        plots(results, folder)
    print(report)
    print(f"written to {folder.relative_to(ROOT)}/ in {results['seconds']} s")


if __name__ == "__main__":
    main()
