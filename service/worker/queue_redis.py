"""The rebuild job queue on Redis Streams: one stream, one consumer group of `ufo worker` processes.

Why Redis Streams and not a queue library (RQ, Celery, arq, dramatiq): Redis is already the distributed
store, so no new service and no new package; a consumer group gives exactly what a rebuild needs and
nothing it does not — at-least-once delivery (XREADGROUP, XACK), a pending list that survives a worker
dying, and XAUTOCLAIM to hand a dead worker's job to a live one — while the dedupe per task, the job
state and the snapshot announcement sit in the same Lua scripts as the enqueue and the ack, so they
never disagree. The libraries pickle callables into their own key layouts and would still need all of
that written on top; their retry and result back-ends overlap with ours.

Keys (namespace `ns`, hash tag {jobs} so a cluster keeps them in one slot for the scripts):
  ns:{jobs}:stream          stream   one entry per queued job: field `job` (Job JSON)
  ns:{jobs}:pending:<task>  string   id of the task's queued-or-running job (dedupe; TTL renewed by heartbeats)
  ns:{jobs}:state:<task>    hash     JobStatus fields (queued/running/done/failed, times, last build)
  ns:{jobs}:latest:<task>   string   SnapshotInfo JSON of the newest snapshot (late joiners read this)
  ns:snapshots:<task>       channel  SnapshotInfo JSON published when a snapshot is announced
A running job's worker renews its claim every `heartbeat_s` (XCLAIM to itself, which resets the idle
time, only while it still owns the entry); a worker killed with -9 stops renewing, and after
`claim_idle_s` another worker's XAUTOCLAIM takes the job over (its delivery count grows; after
`max_attempts` deliveries the job is marked failed). Done and failed entries are acked and deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.config import WorkerSettings
from service.worker.records import Job, JobStatus, SnapshotInfo

log = logging.getLogger(__name__)

TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)  # Redis down or restarting: retry, never fail a job

GROUP = "rebuilders"
PENDING_TTL_S = 3600  # a lost job's dedupe key cannot block new requests for longer than this

# KEYS: pending, state, stream. ARGV: job id, job JSON, reason, now, ttl. Returns {created(0/1), job id}.
_REQUEST_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[5]))
redis.call('XADD', KEYS[3], '*', 'job', ARGV[2])
redis.call('HSET', KEYS[2], 'state', 'queued', 'job_id', ARGV[1], 'reason', ARGV[3], 'queued_at', ARGV[4],
           'started_at', '', 'finished_at', '', 'attempts', '0', 'worker', '', 'error', '')
return {1, ARGV[1]}
"""

# KEYS: stream, pending. ARGV: group, consumer, entry id, ttl. Renews the claim only while we own it.
_HEARTBEAT_LUA = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return 1
"""

# KEYS: stream, pending, state. ARGV: group, entry id, job id, state fields (JSON). Acks and deletes the
# entry, clears the dedupe key if it is this job's, records the state.
_FINISH_LUA = """
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
for k, v in pairs(cjson.decode(ARGV[4])) do redis.call('HSET', KEYS[3], k, v) end
return 1
"""

# KEYS: latest. ARGV: snapshot JSON, channel. Points `latest` at the snapshot and publishes it, unless a
# newer one (more of the log, or a later build of the same offset) is there already. Returns 1 if announced.
_ANNOUNCE_LUA = """
local new = cjson.decode(ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur then
  local c = cjson.decode(cur)
  if c.offset > new.offset or (c.offset == new.offset and c.built_at >= new.built_at) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job this worker holds: its stream entry id and how many times it was delivered."""

    entry_id: str
    job: Job
    deliveries: int


class RedisSubscription:
    """Announcements of one task's snapshots (pub/sub). Reconnects by itself after a Redis restart;
    messages published while disconnected are missed, which is why followers also poll `latest`."""

    def __init__(self, client: aioredis.Redis, channel: str):
        self._client = client
        self._channel = channel
        self._pubsub: aioredis.client.PubSub | None = None

    async def next(self, timeout: float) -> SnapshotInfo | None:
        """The next announcement within `timeout` seconds, or None."""
        try:
            if self._pubsub is None:
                self._pubsub = self._client.pubsub()
                await self._pubsub.subscribe(self._channel)
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        except TRANSIENT as exc:
            log.warning("snapshot announcements on %s interrupted (%s); resubscribing", self._channel, exc)
            await self._drop()
            await asyncio.sleep(timeout)
            return None
        if message is None or message.get("type") != "message":
            return None
        return SnapshotInfo.from_json(message["data"])

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*TRANSIENT):
                await pubsub.aclose()

    async def close(self) -> None:
        await self._drop()


class RedisJobQueue:
    """Producer side (`request_rebuild`, `job_status`, `latest_snapshot`, `subscribe`) for gateways, and
    consumer side (`claim`, `heartbeat`, `start`, `finish`) for `ufo worker`."""

    def __init__(self, client: aioredis.Redis, options: WorkerSettings):
        self.client = client
        self.options = options
        ns = options.namespace
        self.stream = f"{ns}:{{jobs}}:stream"
        self._prefix = f"{ns}:{{jobs}}"
        self._channel_prefix = f"{ns}:snapshots"
        self._request = client.register_script(_REQUEST_LUA)
        self._heartbeat = client.register_script(_HEARTBEAT_LUA)
        self._finish = client.register_script(_FINISH_LUA)
        self._announce = client.register_script(_ANNOUNCE_LUA)
        self._group_ready = False

    @classmethod
    def connect(cls, url: str, options: WorkerSettings) -> RedisJobQueue:
        """A queue on `url` (text replies); connections are made on first use."""
        return cls(aioredis.Redis.from_url(url, decode_responses=True), options)

    @classmethod
    async def open(cls, url: str, options: WorkerSettings) -> RedisJobQueue:
        """Connect and make sure the consumer group exists."""
        queue = cls.connect(url, options)
        await queue.ensure_group()
        return queue

    async def close(self) -> None:
        await self.client.aclose()

    def _key(self, kind: str, task: str) -> str:
        return f"{self._prefix}:{kind}:{task}"

    def channel(self, task: str) -> str:
        return f"{self._channel_prefix}:{task}"

    async def ensure_group(self) -> None:
        """Create the stream and group from the start ('0'): jobs queued before any worker ran count."""
        if self._group_ready:
            return
        try:
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    # -- producer side ---------------------------------------------------------------------------

    async def request_rebuild(self, task: str, reason: str, *, model_version: str | None = None) -> JobStatus:
        """Queue a rebuild of `task` unless one is queued or running (then that one is returned)."""
        await self.ensure_group()
        job = Job(task, reason, model_version=model_version)
        created, job_id = await self._request(
            keys=[self._key("pending", task), self._key("state", task), self.stream],
            args=[job.id, job.to_json(), reason, repr(job.requested_at), PENDING_TTL_S])
        log.info("rebuild of %s (%s): %s job %s", task, reason, "queued" if int(created) else "joined", job_id)
        return await self.job_status(task)

    async def job_status(self, task: str) -> JobStatus:
        """The task's current or last job and last build."""
        return JobStatus.from_fields(task, await self.client.hgetall(self._key("state", task)))

    async def latest_snapshot(self, task: str) -> SnapshotInfo | None:
        """The newest announced snapshot of `task`, or None."""
        text = await self.client.get(self._key("latest", task))
        return None if text is None else SnapshotInfo.from_json(text)

    def subscribe(self, task: str) -> RedisSubscription:
        """Announcements of `task`'s snapshots (on a connection of its own)."""
        return RedisSubscription(self.client, self.channel(task))

    # -- consumer side ---------------------------------------------------------------------------

    async def claim(self, consumer: str, *, block_s: float | None = None) -> Claimed | None:
        """A job for `consumer`: first one a dead worker left behind (idle ≥ claim_idle_s), else a new
        one (waiting up to `block_s`); None when there is none."""
        await self.ensure_group()
        idle_ms = int(self.options.claim_idle_s * 1000)
        try:
            reply = await self.client.xautoclaim(self.stream, GROUP, consumer, idle_ms, "0-0", count=1)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("the job stream or its group is gone (Redis restarted without AOF?); recreating it")
            self._group_ready = False
            return None
        entries = [e for e in reply[1] if e and e[1]]
        if entries:
            log.warning("claimed job %s from a silent worker", entries[0][0])
        else:
            block = int(1000 * (self.options.block_s if block_s is None else block_s))
            streams = await self.client.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=1, block=block or None)
            entries = [e for _, batch in streams or [] for e in batch]
        if not entries:
            return None
        entry_id, fields = entries[0]
        pending = await self.client.xpending_range(self.stream, GROUP, min=entry_id, max=entry_id, count=1)
        deliveries = int(pending[0]["times_delivered"]) if pending else 1
        return Claimed(entry_id, Job.from_json(fields["job"]), deliveries)

    async def heartbeat(self, claimed: Claimed, consumer: str) -> bool:
        """Renew the claim; False when another worker has taken the job over."""
        owned = await self._heartbeat(keys=[self.stream, self._key("pending", claimed.job.task)],
                                      args=[GROUP, consumer, claimed.entry_id, PENDING_TTL_S])
        return bool(int(owned))

    async def start(self, claimed: Claimed, consumer: str) -> None:
        """Mark the job running."""
        await self.client.hset(self._key("state", claimed.job.task), mapping={
            "state": "running", "job_id": claimed.job.id, "reason": claimed.job.reason,
            "started_at": repr(time.time()), "attempts": str(claimed.deliveries), "worker": consumer, "error": ""})

    async def announce(self, info: SnapshotInfo) -> bool:
        """Make `info` the task's latest snapshot and publish it, unless a newer one is announced already."""
        done = await self._announce(keys=[self._key("latest", info.task)],
                                    args=[info.to_json(), self.channel(info.task)])
        if int(done):
            log.info("announced snapshot %s of %s (offset %d)", info.version, info.task, info.offset)
        return bool(int(done))

    async def finish(self, claimed: Claimed, *, info: SnapshotInfo | None = None, error: str = "") -> None:
        """Ack the job and record its outcome: done (with the snapshot it built, if any) or failed with
        `error`. Announce the snapshot first: a worker dying in between leaves a job that runs again,
        never a finished job whose snapshot nobody heard of."""
        fields = {"state": "failed" if error else "done", "finished_at": repr(time.time()), "error": error}
        if info is not None:
            fields |= {"last_build_at": repr(info.built_at), "last_build_seconds": repr(info.build_seconds),
                       "last_version": info.version}
        task = claimed.job.task
        await self._finish(keys=[self.stream, self._key("pending", task), self._key("state", task)],
                           args=[GROUP, claimed.entry_id, claimed.job.id, json.dumps(fields)])
