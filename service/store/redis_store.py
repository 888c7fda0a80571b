"""Redis gallery store: items in a hash, the change log in a Redis Stream (redis-py asyncio).

Keys, under a per-task prefix with a hash tag so one task's keys share a cluster slot:
  {prefix}:items    hash    id → record blob (see `records.encode_record`)
  {prefix}:created  hash    id → created_at (kept beside, so overwrites preserve it)
  {prefix}:log      stream  entry id "<offset>-0", fields op, id[, rec, created]
  {prefix}:offset   string  last offset issued (INCR)
  {prefix}:model    string  the gallery's model version (the fence every write is checked against)
Each write is one Lua script: record, counter and log entry change atomically, so the log never
disagrees with the hash. Stream entry ids are the offsets themselves, so `changes_since` is one
XRANGE and `trim_changes` one XTRIM MINID.
Durability is the server's: an acknowledged write is in memory on the primary; it survives a
restart only with `appendonly yes` (and `appendfsync always` for power loss).
Outages are typed: a server that is down, loading its AOF or read-only raises `StoreUnavailable` (the
gateway answers 503 + Retry-After), out of memory `StoreFull` (507); the client reconnects by itself once the
server is back. A write cut off mid-reply may have been applied: it is an upsert, so the client's retry is safe.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from service.store.base import (
    ModelVersionFenced,
    StoreError,
    StoreFull,
    StoreUnavailable,
    batch_model_version,
    check_not_trimmed,
)
from service.store.records import (
    Change,
    Item,
    ItemPage,
    check_limit,
    check_offset,
    decode_record,
    encode_record,
    page_from_records,
    validate_item,
)

log = logging.getLogger(__name__)

# KEYS: items, created, log, offset, model version. ARGV: now, the records' model version, then (id, record)
# pairs. Returns the last offset; refuses records of another version than the gallery's (the fence).
_UPSERT_LUA = """
local fence = redis.call('GET', KEYS[5])
if not fence then redis.call('SET', KEYS[5], ARGV[2])
elseif fence ~= ARGV[2] then return redis.error_reply('FENCED ' .. fence) end
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
for i = 3, #ARGV, 2 do
  local id, rec = ARGV[i], ARGV[i + 1]
  redis.call('HSETNX', KEYS[2], id, ARGV[1])
  local created = redis.call('HGET', KEYS[2], id)
  redis.call('HSET', KEYS[1], id, rec)
  last = redis.call('INCR', KEYS[4])
  redis.call('XADD', KEYS[3], last .. '-0', 'op', 'upsert', 'id', id, 'rec', rec, 'created', created)
end
return last
"""

# KEYS: items, created, log, offset. ARGV: id. Returns the offset, or 0 when the id was absent.
_DELETE_LUA = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
local off = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], off .. '-0', 'op', 'delete', 'id', ARGV[1])
return off
"""


# KEYS: log, trimmed, offset. ARGV: before. Records the trim mark (never past the head, never
# backwards), then trims; returns entries removed.
_TRIM_LUA = """
local before = tonumber(ARGV[1])
local mark = math.min(before, tonumber(redis.call('GET', KEYS[3]) or '0') + 1)
if mark > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], mark) end
return redis.call('XTRIM', KEYS[1], 'MINID', before .. '-0')
"""


T = TypeVar("T")
CONNECT_TIMEOUT_S = 1.0  # an unreachable server fails a request (503) fast instead of hanging it
SOCKET_TIMEOUT_S = 5.0
_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.BusyLoadingError,
                redis_errors.ReadOnlyError)


def store_error(exc: redis_errors.RedisError, where: str) -> StoreError:
    """The typed store error for a redis-py error (see the module docstring)."""
    message = f"redis store {where}: {type(exc).__name__}: {exc}"
    if isinstance(exc, _UNAVAILABLE) or str(exc).startswith(("MISCONF", "LOADING", "MASTERDOWN", "TRYAGAIN")):
        return StoreUnavailable(message)
    if str(exc).startswith("OOM"):
        return StoreFull(message)
    return StoreError(message)


def guarded(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Raise redis-py errors of a store method as typed store errors."""

    @functools.wraps(method)
    async def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> T:
        try:
            return await method(self, *args, **kwargs)
        except redis_errors.RedisError as exc:
            raise store_error(exc, self.prefix) from exc

    return wrapper


def guarded_iter(method: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    """`guarded` for async generators."""

    @functools.wraps(method)
    async def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> AsyncIterator[T]:
        try:
            async for value in method(self, *args, **kwargs):
                yield value
        except redis_errors.RedisError as exc:
            raise store_error(exc, self.prefix) from exc

    return wrapper


def task_prefix(task: str, namespace: str = "ufo") -> str:
    """Key prefix for one task, e.g. 'ufo:{face}' (braces: a Redis Cluster hash tag)."""
    return f"{namespace}:{{{task}}}"


def _offset_of(entry_id: bytes | str) -> int:
    """Stream entry id '<offset>-0' → offset."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


def _change_of(entry_id: bytes, fields: dict[bytes, bytes]) -> Change:
    item_id = fields[b"id"].decode()
    if fields[b"op"] == b"delete":
        return Change(_offset_of(entry_id), "delete", item_id, None)
    item = decode_record(item_id, fields[b"rec"], float(fields[b"created"]))
    return Change(_offset_of(entry_id), "upsert", item_id, item)


class RedisStore:
    """`GalleryStore` on Redis. Open with `await RedisStore.open(url, task)`."""

    def __init__(self, client: aioredis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix
        self._keys = [f"{prefix}:items", f"{prefix}:created", f"{prefix}:log", f"{prefix}:offset"]
        self._trimmed_key = f"{prefix}:trimmed"
        self._model_key = f"{prefix}:model"
        self._upsert = client.register_script(_UPSERT_LUA)
        self._delete = client.register_script(_DELETE_LUA)
        self._trim = client.register_script(_TRIM_LUA)

    @classmethod
    async def open(cls, url: str, task: str, *, namespace: str = "ufo") -> RedisStore:
        """Connect (binary replies) and check the server answers."""
        client = aioredis.Redis.from_url(
            url, decode_responses=False, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1))  # one quick retry: a stale pooled connection
        try:
            await client.ping()
        except redis_errors.RedisError as exc:
            await client.aclose()
            raise store_error(exc, url) from exc
        log.info("opened redis store %s prefix %s", url, task_prefix(task, namespace))
        return cls(client, task_prefix(task, namespace))

    @guarded
    async def ping(self) -> None:
        """Raise StoreUnavailable unless the server answers (readiness)."""
        await self.client.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()

    async def __aenter__(self) -> RedisStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @guarded
    async def upsert(self, items: Sequence[Item]) -> int:
        """Insert or overwrite atomically; returns the offset of the last change."""
        checked = [validate_item(item) for item in items]
        if not checked:
            return await self.last_offset()
        t0 = time.perf_counter()
        now = time.time()
        version = batch_model_version(checked)
        args: list[Any] = [repr(now), version]
        for item in checked:
            args += [item.id, encode_record(Item(item.id, item.vector, item.metadata, item.model_version,
                                                 item.image_ref, None, now))]
        try:
            offset = int(await self._upsert(keys=[*self._keys, self._model_key], args=args))
        except aioredis.ResponseError as exc:
            if not str(exc).startswith("FENCED "):
                raise
            raise ModelVersionFenced(str(exc).removeprefix("FENCED "), version) from None
        log.debug("upserted %d items up to offset %d in %.1f ms", len(checked), offset,
                  1e3 * (time.perf_counter() - t0))
        return offset

    @guarded
    async def model_version(self) -> str | None:
        value = await self.client.get(self._model_key)
        return None if value is None else value.decode()

    @guarded
    async def set_model_version(self, version: str) -> None:
        await self.client.set(self._model_key, version)

    @guarded
    async def delete(self, item_id: str) -> bool:
        """Delete one record; logs a delete change only when it existed."""
        return int(await self._delete(keys=self._keys, args=[item_id])) > 0

    @guarded
    async def get(self, item_id: str) -> Item | None:
        """The record, or None."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hget(self._keys[0], item_id)
            pipe.hget(self._keys[1], item_id)
            blob, created = await pipe.execute()
        return None if blob is None else decode_record(item_id, blob, float(created))

    @guarded
    async def count(self) -> int:
        """Number of records."""
        return int(await self.client.hlen(self._keys[0]))

    @guarded
    async def last_offset(self) -> int:
        """Newest offset ever issued, 0 before the first."""
        value = await self.client.get(self._keys[3])
        return 0 if value is None else int(value)

    async def _scan(self, batch: int) -> AsyncIterator[tuple[list[bytes], dict[bytes, bytes]]]:
        """HSCAN pages of the items hash as (keys not seen before, the page): HSCAN may repeat a key."""
        check_limit(batch)
        seen: set[bytes] = set()
        cursor = 0
        while True:
            cursor, page = await self.client.hscan(self._keys[0], cursor, count=batch)
            fresh = [key for key in page if key not in seen]
            seen.update(fresh)
            if fresh:
                yield fresh, page
            if cursor == 0:
                return

    @guarded_iter
    async def iter_items(self, batch: int = 1000) -> AsyncIterator[Item]:
        """All records via HSCAN (no order, each once)."""
        async for fresh, page in self._scan(batch):
            created = await self.client.hmget(self._keys[1], fresh)
            for key, when in zip(fresh, created, strict=True):
                if when is not None:  # deleted between HSCAN and HMGET
                    yield decode_record(key.decode(), page[key], float(when))

    @guarded_iter
    async def iter_pages(self, batch: int = 10_000) -> AsyncIterator[ItemPage]:
        """All records as `ItemPage`s via HSCAN (no order, each once). HSCAN returns the records themselves,
        so a page costs one round trip and one join of its vectors."""
        async for fresh, page in self._scan(batch):
            yield page_from_records([key.decode() for key in fresh], [page[key] for key in fresh])

    @guarded
    async def changes_since(self, offset: int, limit: int = 1000) -> list[Change]:
        """Changes with offset > `offset`, oldest first (one XRANGE, with the trim mark)."""
        check_offset(offset)
        check_limit(limit)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.get(self._trimmed_key)
            pipe.xrange(self._keys[2], min=f"{offset + 1}-0", max="+", count=limit)
            trimmed, entries = await pipe.execute()
        check_not_trimmed(offset, 0 if trimmed is None else int(trimmed))
        return [_change_of(entry_id, fields) for entry_id, fields in entries]

    @guarded
    async def trim_changes(self, before: int) -> int:
        """Drop log entries with offset < `before` (XTRIM MINID, exact) and remember the mark."""
        check_offset(before)
        return int(await self._trim(keys=[self._keys[2], self._trimmed_key, self._keys[3]], args=[max(before, 1)]))
