"""A token source for any OpenAI-compatible chat-completions server.

OpenAI itself, vLLM, llama.cpp's server, Ollama and LiteLLM speak the same
streaming protocol: ``POST {base_url}/chat/completions`` with ``stream: true``
answers Server-Sent Events, one ``chat.completion.chunk`` each, then
``data: [DONE]``. The official ``openai`` SDK's async client reads them.

Deliberate choices (each has a test in tests/test_openai_source.py):

1. **The SDK's own retries are off** (``max_retries=0``). They would retry
   connection errors and 408/409/429/5xx, sleeping up to a minute on a
   server's ``Retry-After``, all before the first token and outside any
   deadline of ours. Here only 429 and 5xx answers are retried,
   ``CHAT_OPENAI_RETRIES`` times, after the server's ``Retry-After`` when it
   is at most ``CHAT_OPENAI_RETRY_MAX_WAIT_SECONDS`` (a longer one is not
   waited for: the reply fails at once), else after a doubling backoff.
   An unreachable server is not retried: the client learns at once and can
   send again.
2. **Deadlines are ours, not httpx's read timeout**: the first text within
   ``CHAT_OPENAI_FIRST_TOKEN_SECONDS`` of each attempt (a model still
   loading), then no silence longer than ``CHAT_OPENAI_STALL_SECONDS``.
   Each failure has its own code (app.replies): a read timeout would not say
   which one happened.
3. **A reply is complete only when the server says so**: a chunk with a
   ``finish_reason``. A stream that ends without one, cleanly or not, was cut:
   ``model_interrupted``, never a silent truncation or a fake ``end``.
4. **Cancellation closes the upstream response at once.** The reply store
   cancels the generation (Stop, abandonment, the drain deadline); the
   ``finally`` closes the HTTP response, which closes its connection, and
   the model server sees its client leave and stops generating. Proven
   against a fault server (tests) and llama.cpp (tests/integration/test_model.py).
   ``CHAT_OPENAI_TEST_NO_CANCEL`` (test hooks only) keeps reading the
   response in the background instead, and on shutdown the process waits
   for it to end (:meth:`OpenAISource.aclose`): the leak those tests must
   detect, whether the reply was let go or the process stopped.
5. **Nothing about the server reaches a client**: failures carry fixed
   messages (app.replies), and the log says the status and the exception's
   type, never the URL, the key or the server's error body (OpenAI's 401
   body quotes part of the key).
"""

import asyncio
import contextlib
import email.utils
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from app.config import Settings
from app.replies import (
    MODEL_BUSY,
    MODEL_ERROR,
    MODEL_INTERRUPTED,
    MODEL_MISCONFIGURED,
    MODEL_REJECTED,
    MODEL_STALLED,
    MODEL_TIMEOUT,
    MODEL_UNAVAILABLE,
    Failure,
    Turn,
    Usage,
)
from app.token_source import Finish, TokenSourceError

logger = logging.getLogger(__name__)


def _status_failure(status: int) -> Failure:
    if status in (401, 403):
        return MODEL_MISCONFIGURED
    if status == 429:
        return MODEL_BUSY
    if status >= 500:
        return MODEL_ERROR
    return MODEL_REJECTED  # 400 (a prompt too long...), 404 (no such model), 422


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a server asks to wait: ``retry-after-ms`` (OpenAI's), or
    ``Retry-After`` in seconds or as an HTTP date; None when it says nothing."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            continue
        return max(0.0, when - (time.time() if now is None else now))
    return None


class OpenAISource:
    name = "openai"  # the source label of the upstream metrics (app.metrics)

    def __init__(self, settings: Settings) -> None:
        assert settings.openai_base_url and settings.openai_model and settings.openai_api_key  # Settings checks
        self._model = settings.openai_model
        # The model asked for: the generation span's gen_ai.request.model (app.tracing).
        self.model: str = settings.openai_model
        self._system_prompt = settings.system_prompt
        self._first_token = settings.openai_first_token_seconds
        self._stall = settings.openai_stall_seconds
        self._retries = settings.openai_retries
        self._backoff = settings.openai_retry_backoff_seconds
        self._max_wait = settings.openai_retry_max_wait_seconds
        self._no_cancel = settings.openai_test_no_cancel
        self._options: dict[str, Any] = {
            "max_tokens": settings.openai_max_tokens,
            "temperature": settings.openai_temperature,
            "seed": settings.openai_seed,
        }
        self._client = AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            max_retries=0,
            # Connecting is bounded here; reading, by the deadlines above.
            timeout=openai.Timeout(None, connect=settings.openai_connect_seconds, pool=settings.openai_connect_seconds),
        )
        self._leaked: set[asyncio.Task[None]] = set()  # CHAT_OPENAI_TEST_NO_CANCEL only

    async def aclose(self) -> None:
        # CHAT_OPENAI_TEST_NO_CANCEL: the requests left running keep the model
        # busy until they end, the process's shutdown included (gunicorn's
        # graceful_timeout bounds it); empty otherwise.
        await asyncio.gather(*self._leaked, return_exceptions=True)
        await self._client.close()

    def messages(self, message: str, history: Sequence[Turn] = ()) -> list[ChatCompletionMessageParam]:
        messages: list[ChatCompletionMessageParam] = []
        if self._system_prompt:
            messages.append({"role": "system", "content": self._system_prompt})
        for turn in history:
            messages.append({"role": "user", "content": turn.user})
            messages.append({"role": "assistant", "content": turn.assistant})
        messages.append({"role": "user", "content": message})
        return messages

    async def stream(self, message: str, history: Sequence[Turn] = ()) -> AsyncGenerator[str | Finish, None]:
        loop = asyncio.get_running_loop()
        stream, deadline = await self._open(self.messages(message, history))
        chunks = aiter(stream)
        pending: asyncio.Future[ChatCompletionChunk] | None = None  # CHAT_OPENAI_TEST_NO_CANCEL only
        leaked = False
        try:
            started = False
            reason: str | None = None
            usage: Usage | None = None
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        if self._no_cancel:
                            # Shielded: a cancellation must not reach the SDK's
                            # reader, whose own `finally` would close the response.
                            pending = asyncio.ensure_future(anext(chunks))
                            chunk = await asyncio.shield(pending)
                        else:
                            chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    failure = MODEL_STALLED if started else MODEL_TIMEOUT
                    raise TokenSourceError("no chunk before the deadline", failure) from None
                except openai.APIError as exc:  # the connection dropped, or an error event mid-stream
                    raise TokenSourceError(f"the stream broke ({type(exc).__name__})", MODEL_INTERRUPTED) from None
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    reason = choice.finish_reason or reason
                    # A reasoning model's thinking is progress, not text to show.
                    thinking = getattr(choice.delta, "reasoning_content", None) or getattr(
                        choice.delta, "reasoning", None
                    )
                    started = started or bool(thinking)
                    if choice.delta.content:
                        started = True
                        yield choice.delta.content
                if started:
                    deadline = loop.time() + self._stall
            if reason is None:
                raise TokenSourceError("the stream ended without a finish_reason", MODEL_INTERRUPTED)
            yield Finish("length" if reason == "length" else "stop", usage)
        except (asyncio.CancelledError, GeneratorExit):
            if self._no_cancel:
                self._leak(stream, chunks, pending)
                leaked = True
            raise
        finally:
            if not leaked:
                # What makes the model server stop: the response, and with it
                # the connection, closed now (a no-op when it was read to the end).
                await stream.close()

    async def _open(self, messages: list[ChatCompletionMessageParam]) -> tuple[AsyncStream[ChatCompletionChunk], float]:
        """The response, once its status is 200, and the first token's deadline."""
        loop = asyncio.get_running_loop()
        options = {name: value for name, value in self._options.items() if value is not None}
        attempt = 0
        while True:
            deadline = loop.time() + self._first_token
            try:
                async with asyncio.timeout_at(deadline):
                    stream = await self._client.chat.completions.create(
                        model=self._model,
                        messages=messages,
                        stream=True,
                        stream_options={"include_usage": True},
                        **options,
                    )
                return stream, deadline
            except TimeoutError:
                raise TokenSourceError("no response before the first token's deadline", MODEL_TIMEOUT) from None
            except openai.APIConnectionError as exc:  # refused, DNS, connect timeout, TLS
                raise TokenSourceError(f"unreachable ({type(exc).__name__})", MODEL_UNAVAILABLE) from None
            except openai.APIStatusError as exc:
                failure = _status_failure(exc.status_code)
                wait = self._wait(exc, attempt) if failure in (MODEL_BUSY, MODEL_ERROR) else None
                if wait is None:
                    raise TokenSourceError(f"HTTP {exc.status_code} after {attempt + 1} attempts", failure) from None
                logger.info("the model server answered %d; retrying in %.1f s", exc.status_code, wait)
                await asyncio.sleep(wait)
                attempt += 1

    def _wait(self, exc: openai.APIStatusError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if attempt >= self._retries:
            return None
        asked = retry_after(exc.response.headers)
        if asked is not None:
            return asked if asked <= self._max_wait else None
        return min(self._backoff * 2.0**attempt, self._max_wait)

    def _leak(
        self,
        stream: AsyncStream[ChatCompletionChunk],
        chunks: AsyncIterator[ChatCompletionChunk],
        pending: "asyncio.Future[ChatCompletionChunk] | None",
    ) -> None:
        """CHAT_OPENAI_TEST_NO_CANCEL: read the rest of the response in the
        background, as a source that ignores cancellation would."""

        async def drain() -> None:
            async with stream:
                with contextlib.suppress(Exception):
                    if pending is not None:
                        await pending
                    async for _ in chunks:
                        pass

        task = asyncio.get_running_loop().create_task(drain())
        self._leaked.add(task)
        task.add_done_callback(self._leaked.discard)
