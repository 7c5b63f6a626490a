"""Replies in Valkey, shared by every process of every replica (the default).

Who writes and who reads (one Valkey node; Cluster is not supported: the
scripts touch a conversation's key and its reply's keys together):

    producer process                 Valkey                       follower process
    ----------------                 ------                       ----------------
    create (script: owner     --->   chat:conv:{conversation}     open: HGETALL + XRANGE
      check, SET NX-like, meta)      chat:reply:{message}          (a mirror of the reply)
    tokens, batched (script)  --->   chat:reply:{message}:log ---> one XREAD BLOCK over every
    end / error (script)      --->     (0-1, 0-2 ... 0-n, end)     reply this process follows
    lease every second        --->   chat:proc:{process}      <--- producer alive? if not:
                                                                   write reply_interrupted
    stop (Pub/Sub)            <---   chat:proc:{process}:stop <--- POST .../stop
    end + turn (same script)  --->   chat:conv:{conversation}:turns ---> the next message's history
                                     chat:reply:{message}:watch <- a client follows here

- **The log.** One Stream per reply, entry ``0-(i+1)`` for token ``i`` and
  one closing entry (``end`` or ``error``), so a reconnect reads from any
  index and a retried write cannot add a token twice (stream ids only grow).
  Bounded by ``max_reply_bytes`` and ``max_reply_tokens``.
- **Expiry.** Every key of a generating reply expires ``GENERATING_TTL``
  after its last write (refreshed while the reply is silent); at the end it
  is set to ``resume_ttl``. A conversation's owner expires ``conversation_ttl``
  after its last message. Nothing is left behind once the TTLs pass.
- **History.** A list of JSON turns per conversation, the newest
  ``history_turns`` kept, expiring with the conversation's owner. A reply's
  turn is added by the script that writes its closing entry, only while the
  conversation is still its subject's; a new owner starts with none.
- **Ownership.** Set only by the create script, after every check passed: a
  refused request (not the owner, store full) records nothing, and an owner
  is never dropped while its conversation is alive (``noeviction``).
- **Full store.** New replies are refused (503 ``store_full``) once Valkey uses
  ``CREATE_MEMORY_FRACTION`` of its ``maxmemory``, so replies in flight keep
  the rest; the server's ``noeviction`` policy never drops a live reply.
- **Writes** are batched: one pipeline carries every pending token of every
  reply this process generates, so the store costs about one round trip per
  event-loop turn, not per token. Local clients read the process's own copy
  at once; the store is for other processes and for after this one.
- **Followers** of replies generated elsewhere share one blocking reader per
  process, never a store connection per client.
- **Producer death.** Each process renews a lease (``producer_lease``). A
  process whose clients follow a reply whose producer's lease expired ends it
  with ``reply_interrupted`` (within the lease plus one check interval).
- **Store down.** Creates answer StoreUnavailable (503 ``store_unavailable``);
  replies in flight end with an ``error`` event; redis-py reconnects by itself.

Connections per process: the pool (``max_connections``, shared by requests,
the writer and the lease), plus one for the blocking reader and one for the
stop channel.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app import metrics
from app.replies import (
    INTERRUPTED,
    STORE_FULL,
    STORE_UNAVAILABLE,
    Failure,
    FinishReason,
    NotOwner,
    Reply,
    StoreFull,
    StoreUnavailable,
    Turn,
    Usage,
)
from app.reply_store import ReplyLimits, ReplyStore, process_id, turn_of

logger = logging.getLogger(__name__)

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)

# Seconds a generating reply's keys live after its last write.
GENERATING_TTL = 60.0
# New replies are refused above this share of maxmemory, so live ones can finish.
CREATE_MEMORY_FRACTION = 0.9
# The blocking read's wait: new followers join the read within this (ms).
READ_BLOCK_MS = 200

# KEYS: owner, reply meta, history. ARGV: subject, conversation ttl, conversation
# id, producer, generating ttl, memory fraction, turns to return. Returns
# {status, turn...}: the history (JSON turns, oldest first) with 'ok'.
_CREATE = """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return {'not_owner'} end
local info = redis.call('INFO', 'memory')
local limit = tonumber(string.match(info, 'maxmemory:(%d+)'))
if limit and limit > 0 and tonumber(string.match(info, 'used_memory:(%d+)')) > limit * tonumber(ARGV[6]) then
  return {'full'}
end
-- A new (or expired) conversation starts with no history, whatever was left.
if not owner then redis.call('DEL', KEYS[3]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('HSET', KEYS[2], 'conversation', ARGV[3], 'subject', ARGV[1], 'producer', ARGV[4], 'status', 'generating')
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local turns = {}
if tonumber(ARGV[7]) > 0 then turns = redis.call('LRANGE', KEYS[3], -tonumber(ARGV[7]), -1) end
return {'ok', unpack(turns)}
"""

# Tokens of one reply: ARGV = ttl, id, text, id, text...; 0 when the reply is
# no longer generating in the store (interrupted, or expired and gone).
_APPEND = """
if redis.call('HGET', KEYS[1], 'status') ~= 'generating' then return 0 end
for i = 2, #ARGV, 2 do redis.call('XADD', KEYS[2], ARGV[i], 't', ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""

# The closing entry: KEYS = meta, log, history, owner; ARGV = ttl, id ('' =
# after the last entry), kind, a, b, producer ('' = any; set when another
# process ends a dead producer's reply), usage ('' = none), the turn to add to
# the history ('' = none), turns kept, subject. The turn goes in with the
# closing entry, atomically: a reply whose end is in the store is in its
# conversation's history, and only while the conversation is still its owner's.
_FINISH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'generating' then return 0 end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'producer') ~= ARGV[6] then return 0 end
local id = ARGV[2]
if id == '' then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  local n = 0
  if #last > 0 then n = tonumber(string.match(last[1][1], '-(%d+)$')) end
  id = '0-' .. (n + 1)
end
local entry = {'e', ARGV[3], 'a', ARGV[4], 'b', ARGV[5]}
if ARGV[7] ~= '' then entry[#entry + 1] = 'u'; entry[#entry + 1] = ARGV[7] end
redis.call('XADD', KEYS[2], id, unpack(entry))
redis.call('HSET', KEYS[1], 'status', 'done')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
if ARGV[8] ~= '' and redis.call('GET', KEYS[4]) == ARGV[10] then
  redis.call('RPUSH', KEYS[3], ARGV[8])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[9]), -1)
  redis.call('PEXPIRE', KEYS[3], math.max(1, redis.call('PTTL', KEYS[4])))
end
return 1
"""


def _conversation_key(conversation_id: str) -> str:
    return f"chat:conv:{conversation_id}"


def _history_key(conversation_id: str) -> str:
    return f"chat:conv:{conversation_id}:turns"


def _meta_key(message_id: str) -> str:
    return f"chat:reply:{message_id}"


def _log_key(message_id: str) -> str:
    return f"chat:reply:{message_id}:log"


def _watch_key(message_id: str) -> str:
    return f"chat:reply:{message_id}:watch"


def _lease_key(producer: str) -> str:
    return f"chat:proc:{producer}"


def _stop_channel(producer: str) -> str:
    return f"chat:proc:{producer}:stop"


def _turn(text: str) -> Turn:
    fields = json.loads(text)
    return Turn(fields["user"], fields["assistant"])


def _entry_index(entry_id: str) -> int:
    return int(entry_id.partition("-")[2]) - 1


class ValkeyReplyStore(ReplyStore):
    shared: ClassVar[bool] = True

    def __init__(
        self,
        limits: ReplyLimits,
        *,
        url: str,
        password: str,
        conversation_ttl: float,
        producer_lease: float,
        max_connections: int,
        process: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(limits, clock=clock)
        # Who generates a reply (in its meta) and whose lease and stop channel
        # this is: one store per process, so by default the process's id.
        self.process = process or process_id()
        self._conversation_ttl_ms = int(conversation_ttl * 1000)
        self._lease_ms = int(producer_lease * 1000)
        # Lease renewal, followers' marks and producer checks run this often.
        self._tick = min(1.0, producer_lease / 3)
        # One immediate retry: a pooled connection that died with a Valkey
        # restart is replaced at once, while a store that is down fails fast
        # (redis-py's default backs off for seconds, and meanwhile replies
        # would go on without their store).
        options: dict[str, Any] = {
            "password": password,
            "decode_responses": True,
            "socket_connect_timeout": 1.0,
            "retry": Retry(NoBackoff(), 1),
        }
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=2, socket_timeout=2, **options
        )
        self._redis = Redis.from_pool(pool)  # closes the pool with the client
        # The blocking reader's own connection; its socket timeout must exceed the block time.
        self._reader = Redis.from_url(url, socket_timeout=READ_BLOCK_MS / 1000 + 2, **options)
        self._create_script = self._redis.register_script(_CREATE)
        self._append_script = self._redis.register_script(_APPEND)
        self._finish_script = self._redis.register_script(_FINISH)
        # Pending writes: tokens by reply (in order), then closing entries.
        self._pending_tokens: dict[str, tuple[Reply, list[str]]] = {}
        self._pending_ends: list[Reply] = []
        # Conversations whose replies' ends (and turns) are not written yet:
        # their next message here waits for the write, so it gets the turn.
        self._unwritten: dict[str, int] = {}
        self._written = asyncio.Event()
        self._wake_writer = asyncio.Event()
        self._writer_idle = asyncio.Event()
        self._writer_idle.set()
        # Mirrors of replies generated elsewhere that are not finished: the last entry id read.
        self._following: dict[str, str] = {}
        self._new_follower = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._last_refresh = 0.0

    # ---- lifecycle ----------------------------------------------------------

    async def begin(self) -> None:
        loops = [self._write_loop(), self._read_loop(), self._lease_loop(), self._stop_loop()]
        self._background = [asyncio.get_running_loop().create_task(loop) for loop in loops]
        try:
            await self._renew_lease()
        except UNREACHABLE:
            logger.warning("the reply store is not reachable yet; new messages get 503 until it is")

    async def _shutdown(self) -> None:
        await self._flush()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        with contextlib.suppress(RedisError):
            await self._redis.delete(_lease_key(self.process))
        await self._redis.aclose()
        await self._reader.aclose()

    async def _flush(self, timeout: float = 2.0) -> None:
        """Wait until every pending write is sent (or failed), for at most ``timeout``."""
        try:
            async with asyncio.timeout(timeout):
                while self._pending_tokens or self._pending_ends or not self._writer_idle.is_set():
                    self._wake_writer.set()
                    await self._writer_idle.wait()
                    await asyncio.sleep(0)
        except TimeoutError:
            logger.warning(
                "writes still pending after %.0f s at shutdown: replies may end without their close", timeout
            )

    # ---- creating and finding replies -----------------------------------------

    async def _create(self, *, subject: str, conversation_id: str, message_id: str) -> tuple[Reply, list[Turn]]:
        await self._turns_written(conversation_id)
        keys = [_conversation_key(conversation_id), _meta_key(message_id), _history_key(conversation_id)]
        ttl = int(GENERATING_TTL * 1000)
        args: list[str | int | float] = [subject, self._conversation_ttl_ms, conversation_id, self.process, ttl]
        try:
            with metrics.store_operation("create"):
                status, *turns = await self._create_script(
                    keys=keys, args=[*args, CREATE_MEMORY_FRACTION, self.limits.history_turns]
                )
        except UNREACHABLE as exc:
            raise StoreUnavailable from exc
        except ResponseError as exc:
            if str(exc).startswith("OOM"):
                raise StoreFull("store_full") from exc
            raise StoreUnavailable from exc
        if status == "not_owner":
            raise NotOwner(conversation_id)
        if status == "full":
            raise StoreFull("store_full")
        reply = Reply(conversation_id=conversation_id, message_id=message_id, subject=subject, producer=self.process)
        return reply, [_turn(text) for text in turns]

    async def _turns_written(self, conversation_id: str, timeout: float = 2.0) -> None:
        """Wait (briefly) until this process's last reply in the conversation
        is in the store: a next message sent at once must see its turn. (One
        sent as fast to another replica may not: the write is one round trip.)"""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while conversation_id in self._unwritten:
                    self._written.clear()
                    self._wake_writer.set()
                    await self._written.wait()

    async def _history(self, conversation_id: str) -> list[Turn]:
        await self._turns_written(conversation_id)
        if self.limits.history_turns == 0:
            return []
        try:
            turns = await self._redis.lrange(_history_key(conversation_id), -self.limits.history_turns, -1)
        except UNREACHABLE as exc:
            raise StoreUnavailable from exc
        return [_turn(str(text)) for text in turns]

    def _local(self, message_id: str) -> Reply | None:
        return self._replies.get(message_id)

    async def _load(self, message_id: str) -> Reply | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(_meta_key(message_id))
            pipe.xrange(_log_key(message_id))
            try:
                with metrics.store_operation("load"):
                    meta, entries = await pipe.execute()
            except UNREACHABLE as exc:
                raise StoreUnavailable from exc
        if not meta:
            return None
        existing = self._replies.get(message_id)  # another request loaded it meanwhile
        if existing is not None:
            return existing
        reply = Reply(
            conversation_id=meta["conversation"],
            message_id=message_id,
            subject=meta["subject"],
            producer=meta["producer"],
        )
        self._replies[message_id] = reply
        last_id = "0-0"
        for entry_id, fields in entries:
            self._apply(reply, entry_id, fields)
            last_id = entry_id
        if not reply.done:
            self._following[message_id] = last_id
            self._new_follower.set()
        return reply

    def _apply(self, reply: Reply, entry_id: str, fields: dict[str, str]) -> None:
        if "t" in fields:
            if _entry_index(entry_id) == len(reply.tokens):  # in order, never twice
                reply.append(fields["t"])
            return
        if fields.get("e") == "end":
            if "u" in fields:
                prompt, completion = fields["u"].split()
                reply.usage = Usage(int(prompt), int(completion))
            reason = fields.get("a")
            finish_reason: FinishReason = (
                "stopped" if reason == "stopped" else "length" if reason == "length" else "stop"
            )
            reply.finish(None, self._clock(), finish_reason)
        else:
            reply.finish(Failure(fields.get("a", "error"), fields.get("b", "")), self._clock())
        self._following.pop(reply.message_id, None)

    # ---- writing ----------------------------------------------------------------

    def _record_token(self, reply: Reply, index: int, text: str) -> None:
        pending = self._pending_tokens.get(reply.message_id)
        if pending is None:
            pending = self._pending_tokens[reply.message_id] = (reply, [])
        pending[1].extend((f"0-{index + 1}", text))
        self._wake_writer.set()

    def _record_end(self, reply: Reply) -> None:
        self._pending_ends.append(reply)
        self._unwritten[reply.conversation_id] = self._unwritten.get(reply.conversation_id, 0) + 1
        self._wake_writer.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            if not self._pending_tokens and not self._pending_ends:
                continue
            self._writer_idle.clear()
            tokens, self._pending_tokens = self._pending_tokens, {}
            ends, self._pending_ends = self._pending_ends, []
            try:
                await self._write(tokens, ends)
            except Exception:  # a bug must not stop every later write
                logger.exception("writing replies to the store failed")
            finally:
                for reply in ends:
                    if self._unwritten.get(reply.conversation_id, 0) > 1:
                        self._unwritten[reply.conversation_id] -= 1
                    else:
                        self._unwritten.pop(reply.conversation_id, None)
                self._written.set()
                if not self._pending_tokens and not self._pending_ends:
                    self._writer_idle.set()

    async def _write(self, tokens: dict[str, tuple[Reply, list[str]]], ends: list[Reply]) -> None:
        ttl = int(GENERATING_TTL * 1000)
        resume_ttl = int(self.limits.resume_ttl * 1000)
        order: list[Reply] = []
        async with self._redis.pipeline(transaction=False) as pipe:
            for message_id, (reply, args) in tokens.items():
                await self._append_script([_meta_key(message_id), _log_key(message_id)], [ttl, *args], client=pipe)
                order.append(reply)
            for reply in ends:
                if reply.failure is None:
                    closing = ["end", reply.finish_reason, str(len(reply.tokens))]
                else:
                    closing = ["error", reply.failure.code, reply.failure.message]
                usage = reply.usage
                turn = turn_of(reply) if self.limits.history_turns else None
                extra: list[str | int] = [
                    f"{usage.prompt_tokens} {usage.completion_tokens}" if usage else "",
                    json.dumps({"user": turn.user, "assistant": turn.assistant}) if turn else "",
                    self.limits.history_turns,
                    reply.subject,
                ]
                closing_args: list[str | int] = [resume_ttl, f"0-{len(reply.tokens) + 1}", *closing, "", *extra]
                await self._finish_script(self._closing_keys(reply), closing_args, client=pipe)
                order.append(reply)
            try:
                with metrics.store_operation("write"):
                    results = await pipe.execute(raise_on_error=False)
            except UNREACHABLE:
                logger.warning("the reply store is unreachable: %d replies end with store_unavailable", len(order))
                results = [STORE_UNAVAILABLE] * len(order)
        for reply, result in zip(order, results, strict=True):
            if result == 1:
                continue
            if isinstance(result, Exception):
                metrics.store_error("write")
            if isinstance(result, ResponseError) and str(result).startswith("OOM"):
                failure = STORE_FULL
            elif result == 0:
                failure = INTERRUPTED  # another process ended it, or its keys expired
            else:
                failure = STORE_UNAVAILABLE
            self._lost(reply, failure)

    @staticmethod
    def _closing_keys(reply: Reply) -> list[str]:
        return [
            _meta_key(reply.message_id),
            _log_key(reply.message_id),
            _history_key(reply.conversation_id),
            _conversation_key(reply.conversation_id),
        ]

    def _lost(self, reply: Reply, failure: Failure) -> None:
        """The store could not take a write of ``reply``: end it here too."""
        self._cancel(reply.message_id, failure)
        self._pending_tokens.pop(reply.message_id, None)

    # ---- following replies generated elsewhere ---------------------------------

    async def _read_loop(self) -> None:
        last_check = 0.0
        while True:
            if not self._following:
                self._new_follower.clear()
                await self._new_follower.wait()
                continue
            try:
                streams: dict[Any, Any] = {_log_key(m): last for m, last in self._following.items()}
                # RESP2 (the default protocol): [(key, [(entry id, fields)...])...]
                with metrics.store_operation("read"):
                    result: Any = await self._reader.xread(streams, count=1024, block=READ_BLOCK_MS)
                for key, entries in result or []:
                    reply = self._replies.get(key.removeprefix("chat:reply:").removesuffix(":log"))
                    for entry_id, fields in entries:
                        if reply is None or reply.message_id not in self._following:
                            break
                        self._following[reply.message_id] = entry_id
                        self._apply(reply, entry_id, fields)
                if time.monotonic() - last_check >= self._tick:
                    last_check = time.monotonic()
                    await self._end_orphans()
            except UNREACHABLE:
                self._fail_mirrors(STORE_UNAVAILABLE)
                await asyncio.sleep(self._tick)
            except Exception:
                logger.exception("following replies in the store failed")
                await asyncio.sleep(self._tick)

    async def _end_orphans(self) -> None:
        """End the followed replies whose producer is gone (its lease expired)."""
        mirrors = [self._replies[m] for m in list(self._following) if m in self._replies]
        producers = sorted({reply.producer for reply in mirrors})
        if not producers:
            return
        alive = dict(zip(producers, await self._alive(producers), strict=True))
        resume_ttl = int(self.limits.resume_ttl * 1000)
        for reply in mirrors:
            if not alive[reply.producer]:
                keys = self._closing_keys(reply)
                error = ["error", INTERRUPTED.code, INTERRUPTED.message]
                args: list[str | int] = [resume_ttl, "", *error, reply.producer, "", "", 0, ""]
                if await self._finish_script(keys, args) == 0 and not await self._redis.exists(keys[0]):
                    reply.finish(INTERRUPTED, self._clock())  # its keys are gone
                    self._following.pop(reply.message_id, None)
                # Otherwise the closing entry reaches the reply through the read.

    async def _alive(self, producers: list[str]) -> list[bool]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for producer in producers:
                pipe.exists(_lease_key(producer))
            return [bool(n) for n in await pipe.execute()]

    def _fail_mirrors(self, failure: Failure) -> None:
        for message_id in list(self._following):
            reply = self._replies.get(message_id)
            if reply is not None:
                reply.finish(failure, self._clock())
        self._following.clear()

    def _released(self, reply: Reply) -> None:
        """No local client follows ``reply`` any more: forget this process's copy
        (the store has it). A mirror's producer keeps generating for the resume
        grace from now."""
        if reply.message_id in self._tasks and not reply.done:
            return  # generating here: the abandon timer runs
        self._replies.pop(reply.message_id, None)
        if self._following.pop(reply.message_id, None) is not None and self.limits.resume_grace > 0:
            task = asyncio.get_running_loop().create_task(self._mark_watched(reply, self.limits.resume_grace))
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)

    async def _mark_watched(self, reply: Reply, seconds: float) -> None:
        with contextlib.suppress(RedisError):
            await self._redis.set(_watch_key(reply.message_id), "1", px=max(1, int(seconds * 1000)))

    async def _watched_elsewhere(self, reply: Reply) -> float:
        milliseconds = await self._redis.pttl(_watch_key(reply.message_id))
        return max(0.0, milliseconds / 1000)

    # ---- the lease, followers' marks and stop requests -------------------------

    async def _renew_lease(self) -> None:
        followed = [m for m in self._following if (r := self._replies.get(m)) is not None and r.subscribers > 0]
        refresh = time.monotonic() - self._last_refresh >= GENERATING_TTL / 3
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(_lease_key(self.process), "1", px=self._lease_ms)
            # A client here follows a reply generated elsewhere: its producer
            # must not abandon it. Marked until a little after the next tick.
            for message_id in followed:
                pipe.set(_watch_key(message_id), "1", px=int((self.limits.resume_grace + 3 * self._tick) * 1000))
            if refresh:  # silent replies (a model thinking) keep their keys
                for message_id in self._tasks:
                    pipe.pexpire(_meta_key(message_id), int(GENERATING_TTL * 1000))
                    pipe.pexpire(_log_key(message_id), int(GENERATING_TTL * 1000))
            with metrics.store_operation("lease"):
                await pipe.execute()
        if refresh:
            self._last_refresh = time.monotonic()

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            try:
                await self._renew_lease()
            except UNREACHABLE:
                if self._tasks:
                    logger.warning(
                        "the reply store is unreachable: %d replies end with store_unavailable", len(self._tasks)
                    )
                self.fail_generating(STORE_UNAVAILABLE)
                self._fail_mirrors(STORE_UNAVAILABLE)
            except Exception:
                logger.exception("renewing the producer lease failed")

    async def _signal_stop(self, reply: Reply) -> None:
        try:
            with metrics.store_operation("stop"):
                await self._redis.publish(_stop_channel(reply.producer), reply.message_id)
        except UNREACHABLE as exc:
            raise StoreUnavailable from exc

    async def _stop_loop(self) -> None:
        pubsub: PubSub | None = None
        while True:
            try:
                if pubsub is None:
                    pubsub = self._reader.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(_stop_channel(self.process))
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    reply = self._replies.get(message["data"])
                    if reply is not None:
                        await self.stop(reply)
            except UNREACHABLE:
                if pubsub is not None:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                pubsub = None
                await asyncio.sleep(self._tick)
            except asyncio.CancelledError:
                if pubsub is not None:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
