"""Token sources for unit tests: scripted, and recording what they were sent
and whether they were closed."""

import asyncio
from collections.abc import AsyncGenerator, Sequence

from app.replies import Turn


class ScriptedSource:
    def __init__(self, tokens: list[str], *, fail_after: int | None = None, delay: float = 0) -> None:
        self.tokens = tokens
        self.fail_after = fail_after
        self.delay = delay
        self.closed = False
        self.history: list[Turn] | None = None  # what the last stream() was sent with

    async def stream(self, message: str, history: Sequence[Turn] = ()) -> AsyncGenerator[str, None]:
        self.history = list(history)
        try:
            for index, token in enumerate(self.tokens):
                if index == self.fail_after:
                    raise RuntimeError("model backend went away")
                await asyncio.sleep(self.delay)
                yield token
        finally:
            self.closed = True
