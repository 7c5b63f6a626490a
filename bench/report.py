"""The benchmark's report: bench/run.py's results as report.md and PNG plots.

The report leads with ratios and CPU-normalised figures, measured within one
run and so comparable between machines; absolute figures (events/s, ms)
follow with the machine they were measured on. Every function here reads
results that may lack a phase, or hold a failed phase or run
({"failed": true, "error": ...}): its rows then read "not measured" and the
failure is listed with its error.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

GOALS = {
    # Within one run: comparable between machines.
    "nginx_over_direct_events": 0.90,  # events/s through nginx / directly
    "ttft_open_over_idle": 2.0,  # TTFT p99 with streams open / on an idle stack
    # Measured 15,500-19,100 on two full runs (README, "Performance"): a fifth
    # below the lowest, so a real regression shows and run-to-run noise does not.
    "events_per_api_cpu_second": 12_000,
    "kb_per_stream_total": 30.0,  # nginx + API + store + kernel
    "kb_per_stream_nginx": 10.0,
    "streams_held": 10_000,
    # Absolute: they vary between machines.
    "proxy_added_p50_ms": 0.3,
    "proxy_added_p99_ms": 2.0,
    "ttft_p99_ms": 20.0,
    "events_per_second": 20_000,
}

Row = tuple[str, str, str, str]  # measure, figure, goal, verdict


def runs(data: Any) -> dict[str, dict[str, Any] | None]:
    """A phase's runs by name, None for a run that failed; none at all when
    the phase did not run or failed as a whole."""
    if not isinstance(data, dict) or data.get("failed"):
        return {}
    return {name: None if run.get("failed") else run for name, run in data.items() if isinstance(run, dict)}


def at(data: Any, *keys: str) -> Any:
    """data[k1][k2]...; None where a level is missing."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def figure(value: float, unit: str = "") -> str:
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def judged(measure: str, value: float | None, goal: float | None, unit: str = "", higher: bool = False) -> Row:
    """A row against a goal (higher: the figure must reach it, else stay below it);
    without a goal, the figure is reported."""
    aim = "-" if goal is None else f"{'>=' if higher else '<='} {figure(goal, unit)}"
    if value is None:
        return measure, "-", aim, "not measured"
    if goal is None:
        return measure, figure(value, unit), aim, "reported"
    met = value >= goal if higher else value <= goal
    return measure, figure(value, unit), aim, "met" if met else f"short by {figure(abs(value - goal), unit)}"


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    def line(cells: tuple[str, ...]) -> str:
        # A cell may quote a probe's output: one line, no column separator.
        return "| " + " | ".join(" ".join(cell.split()).replace("|", "\\|") for cell in cells) + " |"

    if not rows:
        return ["Nothing measured."]
    return [line(header), f"|{'---|' * len(header)}", *(line(row) for row in rows)]


# --- What was measured where ---------------------------------------------------


def throughput_runs(r: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """Every throughput run of the phases that ran: (what, result)."""
    found = []
    if "throughput" in r:
        done = runs(r["throughput"])
        found += [("one process, through nginx", done.get("nginx")), ("one process, direct", done.get("direct"))]
    if "granian" in r:
        found.append(("granian, direct", runs(r["granian"]).get("direct")))
    for name, data in r.get("stores", {}).items():
        found.append((f"{name}, through nginx", runs(data).get("throughput")))
    return found


def holds(r: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """Every streams-held run: (what, result)."""
    return [
        (f"{held['deployment']}, {'through nginx' if held['through'] == 'nginx' else 'direct'}" if held else name, held)
        for name, held in runs(r.get("hold")).items()
    ]


def headline_hold(r: dict[str, Any]) -> dict[str, Any] | None:
    """The deployment `make up` runs, through its nginx, at the most streams held."""
    found = [
        held
        for _, held in holds(r)
        if held and held.get("deployment") == r.get("default_deployment") and held.get("through") == "nginx"
    ]
    return max(found, key=lambda held: held["requested"], default=None)


def kb_total(held: dict[str, Any]) -> float:
    return float(sum(held["kb_per_stream"].values()))


def p99(result: dict[str, Any] | None) -> float | None:
    value = at(result, "ttft_ms", "p99")
    return None if value is None else float(value)


def streams_open(ttft: dict[str, Any] | None) -> str:
    return f"{ttft['background_open']:,} streams" if ttft else "streams"


def failures(r: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, error) of every phase or run that failed."""
    found = []
    for label, record in r.get("phases", {}).items():
        data = at(r, *record["path"]) if "path" in record else None
        error = record.get("error") or (at(data, "error") if at(data, "failed") else None)
        if error:
            found.append((label, error))
        elif isinstance(data, dict):
            found += [(f"{label}, {name}", run["error"]) for name, run in data.items() if at(run, "failed")]
    return found


# --- Tables ------------------------------------------------------------------------


def ratios(r: dict[str, Any]) -> list[Row]:
    """The rows measured within one run: ratios, per CPU-second, per stream."""
    rows = []
    if "throughput" in r:
        done = runs(r["throughput"])
        events = ratio(at(done, "nginx", "events_per_second"), at(done, "direct", "events_per_second"))
        rows.append(judged("events/s through nginx / direct, one process", events, GOALS["nginx_over_direct_events"],
                           higher=True))  # fmt: skip
    if "ttft" in r:
        done = runs(r["ttft"])
        slower = ratio(p99(done.get("nginx")), p99(done.get("nginx, idle")))
        rows.append(judged(f"TTFT p99 with {streams_open(done.get('nginx'))} open / idle, one process, through nginx",
                           slower, GOALS["ttft_open_over_idle"]))  # fmt: skip
    for name, data in r.get("stores", {}).items():
        done = runs(data)
        slower = ratio(p99(done.get("ttft")), p99(done.get("ttft_idle")))
        rows.append(judged(f"TTFT p99 with {streams_open(done.get('ttft'))} open / idle, {name}", slower,
                           GOALS["ttft_open_over_idle"]))  # fmt: skip
    for what, result in throughput_runs(r):
        rows.append(judged(f"events per API CPU-second, {what}", at(result, "events_per_api_cpu_second"),
                           GOALS["events_per_api_cpu_second"], higher=True))  # fmt: skip
    for what, result in throughput_runs(r):
        if what.endswith("through nginx"):
            rows.append(judged(f"events per nginx CPU-second, {what}", at(result, "events_per_nginx_cpu_second"), None))
    if "hold" in r:
        held = headline_hold(r)
        where = f"{r.get('default_deployment')}, {held['open']:,} held" if held else str(r.get("default_deployment"))
        rows.append(judged(f"memory per held stream, all in (nginx + API + store + kernel), {where}",
                           kb_total(held) if held else None, GOALS["kb_per_stream_total"], "KB"))  # fmt: skip
        rows.append(judged(f"memory per held stream, nginx, {where}", at(held, "kb_per_stream", "nginx"),
                           GOALS["kb_per_stream_nginx"], "KB"))  # fmt: skip
        rows.append(streams_held(f"streams held with every event, {r.get('default_deployment')}", held, r["mode"]))
    return rows


def streams_held(measure: str, held: dict[str, Any] | None, mode: str) -> Row:
    goal = GOALS["streams_held"]
    if held and held["requested"] < goal:
        why = "a step of the ramp" if mode == "full" else f"quick; MODE=full holds {goal:,}"
        return measure, f"{held['all_events_delivered']:,} of {held['requested']:,}", f">= {goal:,}", why
    return judged(measure, at(held, "all_events_delivered"), goal, "streams", higher=True)


def verdicts(r: dict[str, Any]) -> list[Row]:
    """The absolute rows (ms, events/s): they vary between machines."""
    rows = []
    for name, latency in runs(r.get("latency")).items():
        for q in ("p50", "p99"):
            rows.append(judged(f"proxy adds {q}, {name.replace('_', ' ')}", at(latency, "added_ms", q),
                               GOALS[f"proxy_added_{q}_ms"], "ms"))  # fmt: skip
    for name, ttft in runs(r.get("ttft")).items():
        open_ = f", {ttft['background_open']:,} streams open" if ttft and ttft["background_open"] else ""
        rows.append(judged(f"TTFT p99, {name}{open_}", p99(ttft), GOALS["ttft_p99_ms"], "ms"))
    for what, result in throughput_runs(r):
        rows.append(judged(f"events/s end to end, {what}", at(result, "events_per_second"), GOALS["events_per_second"],
                           "events/s", higher=True))  # fmt: skip
    for _, c in runs(r.get("churn")).items():
        rows.append(leaks(c))
    return rows


def leaks(c: dict[str, Any] | None) -> Row:
    goal = "0 open, memory back to baseline"
    if c is None:
        return "leaks after abrupt disconnects", "-", goal, "not measured"
    measure = f"leaks after {c['cycles']:,} abrupt disconnects"
    api = f"API {c['memory_mib_before']['api']:.0f} -> {c['memory_mib_after']['api']:.0f} MiB"
    streams, generations = c["active_streams"], c["running_generations"]
    if streams is None or generations is None:
        return measure, f"{api}; the API's metrics could not be read", goal, "not measured"
    verdict = "met" if streams == 0 and generations == 0 else "streams left open"
    return measure, f"{streams:g} streams, {generations:g} generations open; {api}", goal, verdict


DEPLOYMENT_COLUMNS = (
    "deployment", "events/s", "events per API CPU-second", "TTFT p99 idle / with streams open, open",
    "streams held, every event", "memory per stream (nginx + API + store + kernel)", "store round trips per token",
    "store connections while held",
)  # fmt: skip


def deployments(r: dict[str, Any]) -> list[tuple[str, ...]]:
    """The deployments side by side, one row each."""
    rows: list[tuple[str, ...]] = []
    for name, data in r.get("stores", {}).items():
        done = runs(data)
        throughput, ttft, idle, held = (done.get(k) for k in ("throughput", "ttft", "ttft_idle", "hold"))
        per_cpu = at(throughput, "events_per_api_cpu_second")
        trips = at(throughput, "round_trips_per_token")
        clients = at(held, "store_clients")
        rows.append((
            name,
            figure(throughput["events_per_second"]) if throughput else "-",
            figure(per_cpu) if per_cpu else "-",
            f"{ms(p99(idle))} / {ms(p99(ttft))}, {ttft['background_open']:,}" if ttft else f"{ms(p99(idle))} / -",
            f"{held['all_events_delivered']:,} of {held['requested']:,}" if held else "-",
            memory(held),
            f"{trips:.3f}" if trips is not None else "-",
            f"{clients:g}" if clients is not None else "-",
        ))  # fmt: skip
    return rows


def ms(value: float | None) -> str:
    return "-" if value is None else figure(value, "ms")


def memory(held: dict[str, Any] | None) -> str:
    """KB per stream in all, and its parts (nginx + API + store + kernel)."""
    if not held:
        return "-"
    kb = held["kb_per_stream"]
    parts = " + ".join(f"{kb[key]:.1f}" for key in ("nginx", "api", "valkey", "kernel") if key in kb)
    return f"{kb_total(held):.1f} KB ({parts})"


# --- Phases and liveness ---------------------------------------------------------------


def sick(record: dict[str, Any]) -> list[str]:
    """The API and nginx containers whose liveness was not green through a phase."""
    found = []
    for name, c in record.get("liveness", {}).items():
        if not isinstance(c, dict):
            continue  # {"error": ...}: not read
        problems = [f"{c['status']}"] if c["status"] != "healthy" else []
        problems += [f"failing streak {c['failing_streak']}"] if c["failing_streak"] else []
        problems += [f"failed probes: {c['failed_probes']}"] if c["failed_probes"] else []
        problems += [f"restarts: {c['restarts']}"] if c["restarts"] else []
        if problems:
            last = f" (last: {c['last_failure']})" if c.get("last_failure") else ""
            found.append(f"{name}: {', '.join(problems)}{last}")
    return found


def liveness(r: dict[str, Any]) -> str:
    records = {label: record for label, record in r.get("phases", {}).items() if "liveness" in record}
    if not records:
        return "Liveness of the API and nginx containers: not read."
    unread = [label for label, record in records.items() if "error" in record["liveness"]]
    problems = [f"{label}: {'; '.join(sick(record))}" for label, record in records.items() if sick(record)]
    if problems:
        return "Liveness failed: " + "; ".join(problems) + "."
    green = "Liveness stayed green through every phase: every API and nginx container healthy, no failed probe"
    return green + ", no restart." + (f" (Not read after: {', '.join(unread)}.)" if unread else "")


def phases(r: dict[str, Any]) -> list[str]:
    rows = []
    failed = dict(failures(r))
    for label, record in r.get("phases", {}).items():
        wait = record.get("health_wait_seconds")
        runs_failed = [where.removeprefix(label + ", ") for where in failed if where.startswith(label + ", ")]
        result = "failed" if label in failed else f"failed: {'; '.join(runs_failed)}" if runs_failed else "ok"
        live = "-" if "liveness" not in record else "; ".join(sick(record)) or "green"
        took = f"{record.get('seconds', 0):.0f} s"
        rows.append((label, "-" if wait is None else f"{wait:.0f} s", took, live, result))
    lines = table(("phase", "waited until healthy", "took", "API and nginx liveness", "result"), rows)
    for where, error in failed.items():
        lines += ["", f"{where} failed:", "", "```", error, "```"]
    return lines


# --- The report ---------------------------------------------------------------------


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [f"# Benchmark ({r['mode']} mode)", ""]
    if r.get("interrupted"):
        lines += ["Interrupted: the phases after the last one below did not run.", ""]
    lines += [
        "## Within this run: ratios and figures per CPU-second and per stream",
        "",
        "Measured against each other in one run, these compare between machines better than the absolute figures.",
        "",
        *table(("measure", "figure", "goal", "verdict"), ratios(r)),
        "",
        liveness(r),
        "",
        "## Phases",
        "",
        "Each phase waits until the services it measures are healthy (and the API ready), then runs.",
        "",
        *phases(r),
        "",
        "## Streams held and memory per stream",
        "",
        *table(
            ("held", "streams held with every event", "memory per stream (nginx + API + store + kernel)"),
            [
                (what, f"{h['all_events_delivered']:,} of {h['requested']:,}", memory(h)) if h else (what, "-", "-")
                for what, h in holds(r)
            ],
        ),
        "",
        "## Absolute figures: they vary between machines",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"Docker {m['docker']}, cgroup {m['cgroup']} ({m['note']}).",
        "",
        *table(("measure", "figure", "goal", "verdict"), verdicts(r)),
        "",
        "Deployments side by side, each through its own nginx:",
        "",
        *table(DEPLOYMENT_COLUMNS, deployments(r)),
    ]
    cpu = [f"{result['client_cpu_seconds']:.1f}" for _, result in throughput_runs(r) if result]
    lines += [""]
    if cpu:
        lines.append(f"Load client CPU in each throughput run, in the order above: {', '.join(cpu)} core-seconds.")
    lines += [
        "CPU per event: each container's CPU time from its cgroup (every replica summed), before and after",
        "the whole throughput run, opening and closing its streams included.",
        "The proxy's added delay is the difference of two arrival times taken by one client process; figures",
        "below about 0.1 ms (or negative) are within that client's timing noise.",
        "Memory per stream: container memory (docker stats) while the streams are held, minus before, after a",
        "restart of nginx, the API and the store; kernel: TCP buffer memory (/proc/net/sockstat), near zero for",
        "idle streams.",
    ]
    return "\n".join(lines) + "\n"


def plots(r: dict[str, Any], folder: Path) -> None:
    """latency.png and memory.png, each when its data exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = {name: run for name, run in runs(r.get("latency")).items() if run and run["samples_ms"]}
    if latency:
        figure, axis = plt.subplots(figsize=(7, 4))
        everything = sorted(ms for run in latency.values() for ms in run["samples_ms"])
        # The central 99 %: a few samples far out are the client's own scheduling noise.
        span = (everything[len(everything) // 200], everything[-len(everything) // 200 - 1])
        for name, run in latency.items():
            axis.hist(run["samples_ms"], bins=60, range=span, density=True, alpha=0.6, label=name.replace("_", " "))
        axis.set(title="Delay added by nginx, per event (central 99 %)", xlabel="ms (through nginx - direct)",
                 ylabel="share of events (density)")  # fmt: skip
        axis.legend()
        figure.tight_layout()
        figure.savefig(folder / "latency.png", dpi=120)
        plt.close(figure)

    held = [
        h
        for _, h in holds(r)
        if h and h.get("deployment") == r.get("default_deployment") and h.get("through") == "nginx"
    ]
    if held:
        held.sort(key=lambda h: h["open"])
        figure, axis = plt.subplots(figsize=(7, 4))
        for key in held[0]["kb_per_stream"]:
            growth = [h["memory_mib_held"].get(key, 0) - h["memory_mib_before"][key] for h in held]
            axis.plot([0, *(h["open"] for h in held)], [0, *growth], marker="o", label=key)
        axis.set(title=f"Memory growth with open streams ({r.get('default_deployment')}, through nginx)",
                 xlabel="open streams", ylabel="MiB")  # fmt: skip
        axis.legend()
        figure.tight_layout()
        figure.savefig(folder / "memory.png", dpi=120)
        plt.close(figure)
