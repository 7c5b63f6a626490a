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


def render(multiprocess_dir: str | None) -> tuple[bytes, str]:
    if multiprocess_dir is None:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
