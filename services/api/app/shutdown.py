"""Whether this process has begun to shut down, for the readiness probe.

On SIGTERM (the kubelet or Docker signals gunicorn's master, which signals
each worker) uvicorn's ``Server.handle_exit`` sets ``should_exit``.
sse-starlette wraps that handler and records the same moment in
``AppStatus.should_exit``, which is what ends every live stream with
``server_shutdown``; readiness reads that flag first, so the process says it
is not ready at the instant its streams are told to reconnect. Where the wrap
did not take (another server class), the SIGTERM handler uvicorn installed is
a bound method of its server, whose ``should_exit`` is read instead.

uvicorn also closes its listening socket within a tick of the signal, so a
new probe connection is mostly refused; the flag covers the requests that
still reach the process (an open keep-alive connection, the tick before the
socket closes). Either way the probe fails from the first moment.
"""

import signal

from sse_starlette.sse import AppStatus


def shutting_down() -> bool:
    if AppStatus.should_exit:
        return True
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))
