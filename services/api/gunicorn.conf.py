"""gunicorn settings for the API, read from the environment.

Why gunicorn in front of uvicorn rather than ``uvicorn --workers``: gunicorn's
arbiter restarts a worker that dies or hangs (its heartbeat), reloads workers
on SIGHUP without dropping the listening socket, and has a bounded graceful
shutdown. The uvicorn worker (package ``uvicorn-worker``) runs the ASGI app.

Ref: https://docs.gunicorn.org/en/stable/settings.html
"""

import os
import shutil
from typing import Any

# The API listens inside the compose network only; the proxy is the way in.
bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"

worker_class = "app.worker.ChatUvicornWorker"
# One async worker holds thousands of streams and uses one core. Replies live
# in Valkey (app/valkey_store.py), so any worker of any replica serves a
# reconnect: scale with workers or with replicas (compose runs two replicas
# of one worker on the 2-core machines this project is measured on). With
# CHAT_REPLY_STORE=memory keep one worker and one replica.
workers = int(os.environ.get("WEB_CONCURRENCY") or "1")

# Not a request timeout: with an async worker this is the worker's heartbeat.
# The event loop notifies the arbiter while streams are open, so long streams
# are never killed by it; only a blocked loop is.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or "30")

# On SIGTERM a worker gets this long before SIGKILL to end its streams
# (server_shutdown, at most 5 s), drain its replies into the store
# (CHAT_DRAIN_SECONDS, 12 s) and flush the last writes (2 s). Keep it above
# their sum and below compose's stop_grace_period, so the app, not the
# arbiter or Docker, ends every reply.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT") or "20")

# Idle keep-alive of connections from the proxy (uvicorn's timeout_keep_alive).
# It must exceed the idle timeout of any proxy that keeps a pool of
# connections to the API: Envoy Gateway's connectionIdleTimeout, 60 s
# (deploy/kubernetes/overlays/gateway-api), ingress-nginx's
# upstream-keepalive-timeout, 60 s by default. If the API closes an idle
# connection first, the proxy can reuse it in the same instant and answer 502.
# The shipped nginx keeps no pool (services/nginx/snippets/http/api.conf).
# Default: 2 s (uvicorn: 5 s).
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE") or "75")

# X-Forwarded-For/-Proto are trusted from these peers. The API is reachable
# only from the proxy on the compose network, so the default trusts any peer;
# narrow it to the proxy's address when the network is shared. The proxy
# sends X-Forwarded-For as one address it has verified (nginx's
# snippets/location/proxy_headers.conf and real_ip.conf), never a client's own claim.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "*"

# Logs go to the container's stderr. The access lines come from the app
# (app/access_log.py: request id, duration, a stream's outcome), not from
# gunicorn or uvicorn. CHAT_LOG_FORMAT=json writes every line as JSON.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("CHAT_LOG_LEVEL") or "info"
_FORMATTERS = {
    "text": {"format": "%(asctime)s %(levelname)s [%(name)s] %(message)s"},
    "json": {"()": "app.log_format.JsonFormatter"},
}
_formatter = _FORMATTERS.get(os.environ.get("CHAT_LOG_FORMAT") or "text", _FORMATTERS["text"])

# gunicorn 27's runtime control socket (`gunicornc`) is not used here, and the
# unprivileged user has no home directory to put it in. Default: enabled.
control_socket_disable = True

# Every line leaves through one handler, with one format: the app's own
# loggers (``app.*``), gunicorn's (``gunicorn.error``) and uvicorn's, which the
# uvicorn worker sends to gunicorn's handlers. The handler's filters
# (app/log_filters.py) keep credentials out of uvicorn's WebSocket handshake
# lines and drop gunicorn's "Error while closing socket" at every stop.
# gunicorn merges this dict over its defaults key by key, so "root" must be
# restated: its default names a handler that this dict replaces.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": _formatter},
    "filters": {
        "no_credentials": {"()": "app.log_filters.NoCredentials"},
        "no_closed_socket_noise": {"()": "app.log_filters.NoClosedSocketNoise"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
            "filters": ["no_credentials", "no_closed_socket_noise"],
        }
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {
        "app": {"handlers": ["stderr"], "level": loglevel.upper(), "propagate": False},
        # Replaces the handler gunicorn gives its own logger (its own format,
        # no filters); uvicorn's logger takes this one's handlers.
        "gunicorn.error": {"handlers": ["stderr"], "level": loglevel.upper(), "propagate": False},
    },
}


# Metrics shared by the workers (app/metrics.py): start from an empty folder,
# and drop the files of a worker that exits so its gauges stop counting.
_METRICS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def on_starting(server: Any) -> None:
    if _METRICS_DIR:
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
        os.makedirs(_METRICS_DIR, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if _METRICS_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, _METRICS_DIR)
