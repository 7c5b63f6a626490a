import signal
from types import FrameType

import uvicorn
from app.main import app
from app.shutdown import shutting_down


def _ignore(sig: int, frame: FrameType | None) -> None:
    # What uvicorn restores and re-raises the captured SIGTERM to when its
    # server stops: the test process must survive it.
    pass


def _sigterm_to_a_uvicorn_server() -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app))
    previous = signal.signal(signal.SIGTERM, _ignore)
    try:
        with server.capture_signals():
            assert not shutting_down()
            signal.raise_signal(signal.SIGTERM)
            assert server.should_exit
            assert shutting_down()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return server


def test_not_shutting_down_by_default() -> None:
    assert not shutting_down()


def test_a_real_sigterm_to_uvicorn_starts_the_shutdown() -> None:
    _sigterm_to_a_uvicorn_server()


def test_the_flag_is_the_serving_servers_only() -> None:
    # Once uvicorn has restored the handler it replaced, the flag of a
    # server that stopped does not make a new one look like it is stopping.
    _sigterm_to_a_uvicorn_server()
    assert not shutting_down()
