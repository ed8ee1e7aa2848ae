"""Every Redis key joblens uses, in one place.

Keys of one space share the hash tag ``{<spaceId>}``, so every multi-key script or transaction of a space stays
in one Redis Cluster slot, and so do the pub/sub channels of its jobs (sharded pub/sub: ``SPUBLISH`` in a script
on the space's slot). API keys are per space too (``…:apikey:<sha256>``: the presented key names its space).

Only three keys are global, and they are designed for a cluster by being touched only by single-key commands,
never inside a space's script or transaction: ``jl:spaces`` (hash spaceId → space JSON), ``jl:keyindex`` (hash
keyId → spaceId, for `keys revoke`) and ``jl:due-spaces`` (zset spaceId → earliest time something may be due
there: a hint for the background sweep). Each lives in the slot of its own name, on one primary. They are small
(one field per space or key) and touched by administration and the sweep, never per request: a request
authenticates and reads within its space's slot. Where an operation writes a global key and a space's keys, the
order is chosen so that a failure between the two is harmless (see `redis_api_keys`, `redis_transitions.rehint`).
The retention pass adds two coordination keys of the same kind, owned by `redis_retention`: ``jl:retention:turn``
and ``jl:retention:index:<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

# What connects to Redis: a standalone client or a cluster client. The stores use only what both offer (commands,
# scripts, pipelines, transactions on one slot); the read cache and the live hub, which hold connections of their
# own, look at which one they got.
RedisClient: TypeAlias = Redis | RedisCluster

SPACES = "jl:spaces"
KEY_INDEX = "jl:keyindex"
DUE_SPACES = "jl:due-spaces"


@dataclass(frozen=True, slots=True)
class SpaceKeys:
    space_id: str

    @property
    def prefix(self) -> str:
        return f"jl:{{{self.space_id}}}"

    def api_key(self, key_sha256: str) -> str:
        return f"{self.prefix}:apikey:{key_sha256}"

    @property
    def api_keys(self) -> str:
        """Hash keyId → sha256 of the key: lists a space's keys without ever storing them."""
        return f"{self.prefix}:apikeys"

    def rate_bucket(self, key_sha256: str) -> str:
        """Token bucket of one API key, named by the first 20 hex digits of the key's SHA-256 (what a request
        presents), not by the key id: authenticating then takes one round trip."""
        return f"{self.prefix}:rl:{key_sha256[:20]}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def progress(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:progress"

    def log_seq(self, job_id: str) -> str:
        """Last seq reserved for the job's log lines."""
        return f"{self.prefix}:job:{job_id}:seq"

    def log_visible(self, job_id: str) -> str:
        """Visibility watermark, what readers see: every seq <= it is searchable or abandoned."""
        return f"{self.prefix}:job:{job_id}:visible"

    def log_durable(self, job_id: str) -> str:
        """Durability watermark: every seq <= it is acknowledged (durable in Elasticsearch) or abandoned. A read
        that finds it above ``log_visible`` refreshes the index and raises ``log_visible`` to it. Absent for a job
        whose log predates it: ``log_visible`` stands for it then."""
        return f"{self.prefix}:job:{job_id}:durable"

    def log_inflight(self, job_id: str) -> str:
        """Zset of reserved ranges ``first:last`` scored by lease expiry (ms)."""
        return f"{self.prefix}:job:{job_id}:inflight"

    def log_done(self, job_id: str) -> str:
        """Zset of finished ranges ``first:last`` above the watermark, scored by first seq."""
        return f"{self.prefix}:job:{job_id}:done"

    def log_abandoned(self, job_id: str) -> str:
        """Zset of ranges whose append failed or whose lease expired: never shown to readers."""
        return f"{self.prefix}:job:{job_id}:abandoned"

    def log_live(self, job_id: str) -> str:
        """Sharded pub/sub channel (``SPUBLISH``/``SSUBSCRIBE``, Redis 7+; on a cluster it lives on the space's
        slot, so only that shard carries it): "the job's lines are durable up to <seq>", published after an append
        (a wake-up for the live streams; at-most-once, never needed for correctness)."""
        return f"{self.prefix}:job:{job_id}:live"

    @property
    def logs_to_clean(self) -> str:
        """Zset jobId → time (ms) of the job's latest abandoned log range: lines the janitor removes."""
        return f"{self.prefix}:logs:to-clean"

    def idempotency(self, job_id: str, key_digest: str) -> str:
        return f"{self.prefix}:job:{job_id}:idem:{key_digest}"

    @property
    def all_jobs(self) -> str:
        return f"{self.prefix}:jobs"

    def jobs_with_status(self, status: str) -> str:
        return f"{self.prefix}:jobs:{status}"

    @property
    def queue(self) -> str:
        """Pending jobs scored by the time they became available (oldest first)."""
        return f"{self.prefix}:queue"

    def name_queue(self, name: str) -> str:
        """Pending jobs of one name, scored like ``queue`` (poll with a names filter)."""
        return f"{self.prefix}:queue:name:{name}"

    @property
    def scheduled(self) -> str:
        """Scheduled jobs scored by ``scheduledFor``."""
        return f"{self.prefix}:scheduled"

    @property
    def deadlines(self) -> str:
        """Delivered (ack) and running (execution) jobs scored by their deadline."""
        return f"{self.prefix}:deadlines"

    @property
    def callbacks(self) -> str:
        """Callback deliveries due, scored by the time of the next attempt."""
        return f"{self.prefix}:callbacks"

    def callback(self, delivery_id: str) -> str:
        return f"{self.prefix}:callback:{delivery_id}"


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients here do not decode responses, to keep binary-safe values)."""
    return value.decode() if isinstance(value, bytes) else value


def decode_hash(raw: dict[bytes, bytes]) -> dict[str, str]:
    """A Redis hash reply as text."""
    return {k.decode(): v.decode() for k, v in raw.items()}
