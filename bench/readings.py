"""What the benchmark reads from its running stack, through the docker CLI
and the host's /proc and cgroup files: containers, memory, CPU time, the
API's metrics, Valkey's clients, and the healthchecks of the API and nginx."""

import json
import os
import platform
import re
import subprocess
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

PROJECT = "chat-stream-bench"  # the benchmark's compose project
LIVENESS_POLL = 15  # seconds between readings of the healthchecks during a phase


def docker(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])} failed: {done.stderr.strip()[-1000:]}")
    return done.stdout


def containers(*services: str, stopped: bool = False) -> list[str]:
    """Full ids of the services' containers (every replica; the running ones,
    or also the stopped ones)."""
    listed = docker("ps", *(["--all"] if stopped else []), "--no-trunc",
                    "--filter", f"label=com.docker.compose.project={PROJECT}",
                    "--format", '{{.ID}} {{.Label "com.docker.compose.service"}}')  # fmt: skip
    return [line.split()[0] for line in listed.splitlines() if line.split()[1:] and line.split()[1] in services]


def api_get(container: str, path: str) -> str:
    """GET from inside an API container: the API publishes no port."""
    url = f"http://127.0.0.1:8000{path}"
    script = f"import urllib.request;print(urllib.request.urlopen('{url}', timeout=10).read().decode())"
    return docker("exec", container, "python3", "-c", script, timeout=30)


def memory_mib(services: dict[str, str]) -> dict[str, float]:
    """Memory of every container (replica) of each service, by role: one
    docker stats call, so the readings are taken together."""
    ids = {container: role for role, service in services.items() for container in containers(service)}
    totals = dict.fromkeys(services, 0.0)
    units = {"B": 2**-20, "KiB": 2**-10, "kB": 2**-10, "MiB": 1.0, "MB": 1.0, "GiB": 2**10, "GB": 2**10, "TiB": 2**20}
    if ids:
        stats = docker("stats", "--no-stream", "--format", "{{.Container}} {{.MemUsage}}", *ids)
        for line in stats.splitlines():
            container, usage = line.split(" ", 1)
            found = re.match(r"\s*([\d.]+)\s*([A-Za-z]+)", usage)
            if not found or found[2] not in units:
                raise RuntimeError(f"docker stats: no memory reading for {container[:12]}: {usage}")
            totals[ids[container]] += float(found[1]) * units[found[2]]
    return totals


def kernel_tcp_mib() -> float:
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return 0.0


# Where the host keeps a container's CPU time: cgroup v1's cpuacct.usage
# (nanoseconds; the hierarchy mounted under either name, the cgroupfs or the
# systemd driver) or cgroup v2's cpu.stat (usage_usec). Read from the host,
# the reading costs the containers nothing.
CPU_FILES = (
    "/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage",
    "/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage",
    "/sys/fs/cgroup/cpu,cpuacct/system.slice/docker-{id}.scope/cpuacct.usage",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat",
    "/sys/fs/cgroup/docker/{id}/cpu.stat",
)
CPU_IN_CONTAINER = "cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || cat /sys/fs/cgroup/cpu.stat"


def cpu_seconds(service: str) -> float:
    """CPU time every container (replica) of the service has used since it started."""
    total = 0.0
    for container in containers(service):
        path = next((Path(p.format(id=container)) for p in CPU_FILES if Path(p.format(id=container)).exists()), None)
        # Elsewhere (Docker on another host, another layout), the container's own view of its cgroup.
        text = path.read_text() if path else docker("exec", container, "sh", "-c", CPU_IN_CONTAINER)
        usec = re.search(r"^usage_usec (\d+)", text, re.MULTILINE)
        total += int(usec.group(1)) / 1e6 if usec else int(text.split()[0]) / 1e9
    return total


def api_metrics(service: str) -> dict[str, float] | None:
    """The API's metrics, summed over its replicas; None when they could not
    be read (the figures that need them are left out, the run goes on)."""
    values: dict[str, float] = {}
    try:
        for container in containers(service):
            for line in api_get(container, "/metrics").splitlines():
                if line and not line.startswith("#"):
                    name, value = line.rsplit(" ", 1)
                    values[name] = values.get(name, 0.0) + float(value)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
        print(f"  no metrics from {service}: {exc}", flush=True)
        return None
    return values


def metric_sum(metrics: dict[str, float] | None, name: str) -> float | None:
    """A metric summed over its labels (None when absent or unread)."""
    values = [v for k, v in (metrics or {}).items() if k == name or k.startswith(name + "{")]
    return sum(values) if values else None


def store_clients(service: str) -> float:
    """Connections Valkey has open (every API process's pool, reader and stop channel)."""
    (container,) = containers(service)
    # valkey-cli 8.1 reads REDISCLI_AUTH (VALKEYCLI_AUTH only in later releases).
    auth = 'VALKEYCLI_AUTH="$VALKEY_PASSWORD" REDISCLI_AUTH="$VALKEY_PASSWORD"'
    info = docker("exec", container, "sh", "-c", f"{auth} valkey-cli info clients", timeout=30)
    return float(next(line.split(":")[1] for line in info.splitlines() if line.startswith("connected_clients:")))


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    try:
        version = docker("version", "--format", "{{.Server.Version}}").strip() or "unknown"
    except (RuntimeError, subprocess.TimeoutExpired, OSError):
        version = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "kernel": platform.release(),
        "docker": version,
        "cgroup": "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1",
        "note": "load client, nginx and the API share these cores",
    }


# --- Liveness --------------------------------------------------------------------


def in_start_period(container: dict[str, Any], probe: dict[str, Any]) -> bool:
    """Docker does not count a probe that fails while the process starts."""
    period = ((container["Config"].get("Healthcheck") or {}).get("StartPeriod") or 0) / 1e9
    try:
        since = datetime.fromisoformat(probe["Start"]) - datetime.fromisoformat(container["State"]["StartedAt"])
    except ValueError:
        return False
    return since.total_seconds() < period


class Liveness:
    """The healthchecks of the services' containers (every replica) through one phase.

    Docker keeps a container's last five probe results only (25 s at the
    images' 5 s interval), so they are read every LIVENESS_POLL seconds while
    the phase runs, not only at its end."""

    def __init__(self, services: tuple[str, ...]) -> None:
        self.services = services
        self.failed: dict[tuple[str, str], str] = {}  # (container, probe start): its output
        self.before: set[tuple[str, str]] = set()  # failures older than the phase
        self.restarts: dict[str, int] = {}  # container: its restart count when the phase began
        self.done = threading.Event()
        self.poller = threading.Thread(target=self.poll, daemon=True)

    def __enter__(self) -> "Liveness":
        self.read()
        self.before = set(self.failed)
        self.poller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.poller.join()

    def poll(self) -> None:
        while not self.done.wait(LIVENESS_POLL):
            self.read()

    def read(self) -> list[dict[str, Any]]:
        try:
            ids = containers(*self.services, stopped=True)
            found: list[dict[str, Any]] = json.loads(docker("inspect", *ids)) if ids else []
        except (RuntimeError, subprocess.TimeoutExpired, ValueError):
            return []  # the next reading, or the summary, says so
        for c in found:
            self.restarts.setdefault(c["Id"], c["RestartCount"])
            for probe in (c["State"].get("Health") or {}).get("Log") or []:
                if probe["ExitCode"] != 0 and not in_start_period(c, probe):
                    self.failed[(c["Id"], probe["Start"])] = " ".join(probe["Output"].split())[-300:]
        return found

    def summary(self) -> dict[str, Any]:
        """By container name: its health now, and its failed probes and restarts during the phase."""
        found = self.read()
        if not found:
            return {"error": "docker inspect read nothing"}
        summary = {}
        for c in found:
            health = c["State"].get("Health") or {}
            failed = [out for key, out in sorted(self.failed.items()) if key[0] == c["Id"] and key not in self.before]
            summary[c["Name"].lstrip("/")] = {
                "service": c["Config"]["Labels"].get("com.docker.compose.service"),
                "status": health.get("Status", c["State"]["Status"]),
                "failing_streak": health.get("FailingStreak", 0),
                "failed_probes": len(failed),
                "restarts": c["RestartCount"] - self.restarts.get(c["Id"], c["RestartCount"]),
                **({"last_failure": failed[-1]} if failed else {}),
            }
        return summary
