"""The embedded digital twin: a deterministic token source with realistic pacing.

Its reply mixes Latin, Arabic (right-to-left, with Arabic punctuation), CJK
and emoji (skin-tone modifiers, a ZWJ family, a flag), so every stream carries
2-, 3- and 4-byte UTF-8 characters and multi-code-point graphemes: a client
that decodes chunks without ``TextDecoder({stream: true})`` shows U+FFFD.
"""

import asyncio
from collections.abc import AsyncGenerator
from itertools import cycle, islice

from app.token_source import TokenSourceError

SCRIPT: tuple[str, ...] = (
    "Hello",
    ",",
    " I",
    " am",
    " your",
    " digital",
    " twin",
    ".",
    " مرحبا",
    "،",
    " أنا",
    " توأمك",
    " الرقمي",
    ".",
    " 你好",
    "，",
    "我",
    "是",
    "你的",
    "数字",
    "孪生",
    "。",
    " 👋🏽",
    " Here",
    " is",
    " a",
    " family",
    ":",
    " 👨‍👩‍👧‍👦",
    " and",
    " a",
    " flag",
    ":",
    " 🇯🇵",
    ".",
    "\n",
    "Each",
    " piece",
    " reaches",
    " you",
    " as",
    " soon",
    " as",
    " it",
    " is",
    " written",
    " ✨",
    "\n",
)

FAULT_PREFIX = "/fail"
FAULT_AFTER_TOKENS = 3


def reply_tokens(count: int) -> list[str]:
    """The first ``count`` tokens of the twin's reply (the script, repeated)."""
    return list(islice(cycle(SCRIPT), count))


class Twin:
    def __init__(self, *, tokens: int, delay_seconds: float, fault_injection: bool = False) -> None:
        self._tokens = tokens
        self._delay = delay_seconds
        self._fault_injection = fault_injection

    async def stream(self, message: str) -> AsyncGenerator[str, None]:
        fail_after = FAULT_AFTER_TOKENS if self._fault_injection and message.startswith(FAULT_PREFIX) else None
        for index, text in enumerate(reply_tokens(self._tokens)):
            if index == fail_after:
                raise TokenSourceError("fault injected by the test hook")
            await asyncio.sleep(self._delay)
            yield text
