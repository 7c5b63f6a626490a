"""The embedded digital twin: a deterministic token source with realistic pacing.

Its reply mixes Latin, Arabic (right-to-left, with Arabic punctuation), CJK
and emoji (skin-tone modifiers, a ZWJ family, a flag), so every stream carries
2-, 3- and 4-byte UTF-8 characters and multi-code-point graphemes: a client
that decodes chunks without ``TextDecoder({stream: true})`` shows U+FFFD.

With test hooks enabled (``CHAT_TWIN_TEST_HOOKS``; refused in production), a
message that starts with one of these drives a failure path:

    /fail        raise after FAULT_AFTER_TOKENS tokens
    /pause S     stay silent for S seconds before the first token
    /flood       produce FLOOD_BYTES of text as fast as possible
    /forge       tokens that try to break SSE framing (CR, LF, NUL, "event:")
    /pace MS N   N tokens, MS milliseconds apart (the benchmark's load shapes)
    /stall N S   the usual reply, silent for S seconds after token N (idle timeouts)
"""

import asyncio
from collections.abc import AsyncGenerator, Iterator, Sequence
from itertools import cycle, islice

from app.replies import Turn
from app.token_source import TokenSourceError

SCRIPT: tuple[str, ...] = (
    "Hello", ",", " I", " am", " your", " digital", " twin", ".",
    " مرحبا", "،", " أنا", " توأمك", " الرقمي", ".",
    " 你好", "，", "我", "是", "你的", "数字", "孪生", "。",
    " 👋🏽", " Here", " is", " a", " family", ":", " 👨‍👩‍👧‍👦", " and", " a", " flag", ":", " 🇯🇵", ".",
    "\n", "Each", " piece", " reaches", " you", " as", " soon", " as", " it", " is", " written", " ✨", "\n",
)  # fmt: skip

FAULT_AFTER_TOKENS = 3
FLOOD_BYTES = 10 * 1024 * 1024
FLOOD_TOKEN_BYTES = 4096
FORGED_TOKENS = ("\n\nevent: end\ndata: {}\n\n", "carriage\rreturn", "nul\x00byte", "id: 999\n", "\r\n\r\n")


def script_tokens(count: int) -> Iterator[str]:
    """The first ``count`` tokens of the twin's reply (the script, repeated), lazily."""
    return islice(cycle(SCRIPT), count)


def reply_tokens(count: int) -> list[str]:
    return list(script_tokens(count))


class Twin:
    name = "twin"  # the source label of the upstream metrics (app.metrics)

    def __init__(self, *, tokens: int, delay_seconds: float, test_hooks: bool = False) -> None:
        self._tokens = tokens
        self._delay = delay_seconds
        self._test_hooks = test_hooks

    async def stream(self, message: str, history: Sequence[Turn] = ()) -> AsyncGenerator[str, None]:
        # The twin says the same whatever came before: history is for models.
        hook, _, argument = message.partition(" ") if self._test_hooks else ("", "", "")
        if hook == "/flood":
            for index in range(FLOOD_BYTES // FLOOD_TOKEN_BYTES):
                await asyncio.sleep(0)
                # Distinct strings, so the reply really holds FLOOD_BYTES of text.
                yield f"{index:08d}".ljust(FLOOD_TOKEN_BYTES, "x")
            return
        if hook == "/forge":
            for token in FORGED_TOKENS:
                yield token
            return
        tokens, delay = self._tokens, self._delay
        if hook == "/pause":
            await asyncio.sleep(float(argument.split()[0]))
        if hook == "/pace":
            milliseconds, count = argument.split()[:2]
            delay, tokens = float(milliseconds) / 1000, int(count)
        fail_after = FAULT_AFTER_TOKENS if hook == "/fail" else None
        stall_after, stall_seconds = -1, 0.0
        if hook == "/stall":
            stall_after, stall_seconds = int(argument.split()[0]), float(argument.split()[1])
        # Lazily: a long reply must not be built in memory before it is sent.
        for index, text in enumerate(script_tokens(tokens)):
            if index == fail_after:
                raise TokenSourceError("fault injected by the test hook")
            if index == stall_after:
                await asyncio.sleep(stall_seconds)
            await asyncio.sleep(delay)
            yield text
