import asyncio

import pytest
from app.token_source import TokenSourceError
from app.twin import FAULT_AFTER_TOKENS, SCRIPT, Twin, reply_tokens


async def collect(twin: Twin, message: str) -> list[str]:
    return [token async for token in twin.stream(message)]


def test_reply_repeats_the_script_to_the_requested_length() -> None:
    assert reply_tokens(3) == list(SCRIPT[:3])
    assert reply_tokens(len(SCRIPT) + 2) == [*SCRIPT, *SCRIPT[:2]]


def test_the_script_exercises_every_utf8_width() -> None:
    widths = {len(char.encode()) for char in "".join(SCRIPT)}
    assert widths == {1, 2, 3, 4}
    text = "".join(SCRIPT)
    for sample in ("مرحبا", "你好", "👋🏽", "👨‍👩‍👧‍👦", "🇯🇵"):
        assert sample in text


def test_twin_streams_the_configured_number_of_tokens() -> None:
    twin = Twin(tokens=10, delay_seconds=0)
    assert asyncio.run(collect(twin, "hello")) == reply_tokens(10)


def test_fault_hook_raises_after_a_few_tokens_when_enabled() -> None:
    twin = Twin(tokens=10, delay_seconds=0, test_hooks=True)
    tokens: list[str] = []

    async def run() -> None:
        async for token in twin.stream("/fail now"):
            tokens.append(token)

    with pytest.raises(TokenSourceError):
        asyncio.run(run())
    assert tokens == reply_tokens(FAULT_AFTER_TOKENS)


def test_fault_hook_is_inert_when_disabled() -> None:
    twin = Twin(tokens=10, delay_seconds=0)
    assert asyncio.run(collect(twin, "/fail now")) == reply_tokens(10)


def test_pace_hook_sets_count_and_delay() -> None:
    twin = Twin(tokens=10, delay_seconds=5, test_hooks=True)
    assert asyncio.run(collect(twin, "/pace 0 3")) == reply_tokens(3)


def test_the_stall_hook_pauses_after_n_tokens() -> None:
    import time

    async def arrivals() -> list[float]:
        start, times = time.perf_counter(), []
        async for _ in Twin(tokens=6, delay_seconds=0, test_hooks=True).stream("/stall 3 0.3"):
            times.append(time.perf_counter() - start)
        return times

    times = asyncio.run(arrivals())
    assert len(times) == 6
    assert times[3] - times[2] > 0.25 and times[2] < 0.1  # the silence falls between tokens 2 and 3
