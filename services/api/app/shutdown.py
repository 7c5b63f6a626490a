"""Whether this process has begun to shut down: for the readiness probe, and
for the streams' last event (app.open_streams).

On SIGTERM (the kubelet or Docker signals gunicorn's master, which signals
each worker) uvicorn's ``Server.handle_exit`` sets ``should_exit``. The
SIGTERM handler uvicorn installs while it serves is that bound method, so
its server, and the flag, are found through it: no global to patch, and the
answer is true from the signal's first instant.

uvicorn also closes its listening socket within a tick of the signal, so a
new probe connection is mostly refused; the flag covers the requests that
still reach the process (an open keep-alive connection, the tick before the
socket closes). Either way the probe fails from the first moment.
"""

import signal


def shutting_down() -> bool:
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))
