"""Prometheus metrics, correct across gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the image sets it), each worker writes
its values to files there and ``/metrics`` adds up the live workers
(gunicorn.conf.py clears the folder at start and drops a dead worker's files).
Without it (unit tests), values live in this process.
Ref: https://prometheus.github.io/client_python/multiprocess/
"""

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest, multiprocess

ACTIVE_STREAMS = Gauge("chat_active_streams", "Open event-stream connections.", multiprocess_mode="livesum")
RUNNING_GENERATIONS = Gauge(
    "chat_running_generations", "Replies whose token source is running.", multiprocess_mode="livesum"
)
STREAMS_ENDED = Counter("chat_streams_ended", "Event-stream connections by how they ended.", ["outcome"])
# The shared store's cost: one per request sent to Valkey (a pipeline of many
# commands is one), by what it was for: create, load, write, read, lease, stop.
STORE_ROUND_TRIPS = Counter("chat_store_round_trips", "Round trips to the reply store, by operation.", ["operation"])


def render(multiprocess_dir: str | None) -> tuple[bytes, str]:
    if multiprocess_dir is None:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
