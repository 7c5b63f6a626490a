import signal
from types import FrameType

import pytest
import uvicorn
from app.main import app
from app.shutdown import shutting_down
from sse_starlette.sse import AppStatus


@pytest.fixture(autouse=True)
def _running(monkeypatch: pytest.MonkeyPatch) -> None:
    # sse-starlette's flag is process-wide; every test starts (and ends) with it clear.
    monkeypatch.setattr(AppStatus, "should_exit", False)


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
    # The same moment sse-starlette ends the streams with server_shutdown.
    assert AppStatus.should_exit


def test_uvicorns_own_flag_is_read_without_sse_starlettes(monkeypatch: pytest.MonkeyPatch) -> None:
    # sse-starlette's wrap records nothing: the server's should_exit still counts.
    monkeypatch.setattr(AppStatus, "enable_automatic_graceful_drain", False)
    _sigterm_to_a_uvicorn_server()
    assert not AppStatus.should_exit
