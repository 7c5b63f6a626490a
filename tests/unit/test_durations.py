"""The duration parser the unit and integration tests share (tests/durations.py)."""

import pytest

from tests.durations import seconds


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("1m30s", 90.0, id="minutes-and-seconds"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("1h0m0s", 3600.0, id="go-style"),
        pytest.param("1.5s", 1.5, id="decimal"),
        pytest.param("45", 45.0, id="bare-number"),
        pytest.param(" 2s ", 2.0, id="surrounding-space"),
        pytest.param(60, 60.0, id="yaml-integer"),
    ],
)
def test_a_duration_is_read_in_seconds(duration: str | int, expected: float) -> None:
    assert seconds(duration) == expected


@pytest.mark.parametrize("duration", ["", "s", "5x", "5s garbage", "1d", "-5s", "1 m"])
def test_anything_else_is_refused_not_read_as_zero(duration: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        seconds(duration)
