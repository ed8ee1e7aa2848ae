"""Writes a Redis failover must not lose: a script, then ``WAIT`` for a replica, on one connection.

Redis replicates asynchronously. An append's *finish* acknowledged by a primary that dies before its replica got
it would leave the promoted replica with the range still in flight: abandoned at its lease's end, acknowledged
lines hidden. ``WAIT n timeout`` answers once ``n`` replicas hold every write made *on that connection*, so the
script and the ``WAIT`` must share one: a standalone client sends both in one pipeline; a cluster client's
pipeline routes keyless ``WAIT`` to a random node, so the two are sent straight to the primary of the keys' slot
(`ClusterNode.execute_pipeline`: one connection, one round trip), and a redirect (the slot moved) falls back to
the cluster client, which follows it.

A replica that does not answer within the timeout (stopped, cut off, far behind) does not turn appends into
errors: Redis's own availability stays, the write is on the primary, and ``unreplicated`` counts it (a failover
within that time is the only case that may still hide the lines, see docs/operations.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import PipelineCommand, RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import AskError, MovedError, NoScriptError, RedisError, SlotNotCoveredError, TryAgainError

from service.stores.keyspace import RedisClient

log = logging.getLogger(__name__)

# Replies that mean the script did not run on that node and the cluster client should route it again.
REDIRECTED = (MovedError, AskError, TryAgainError)
REPLICAS_FRESH_S = 5.0  # how long a primary's count of online replicas is trusted
WARN_EVERY_S = 10.0  # at most one warning per this while replicas stay silent; the metric counts every one


class ReplicaWait:
    """Runs write scripts so that their reply comes only once ``replicas`` replicas hold the write (or
    ``timeout_s`` passed). ``replicas=None`` (auto) waits for 1 wherever the primary has a replica online (its
    ``INFO replication``, asked again every `REPLICAS_FRESH_S`: a replica that joins later, the old primary after
    a failover, is waited for too), else for none."""

    def __init__(
        self,
        redis: RedisClient,
        replicas: int | None,
        timeout_s: float,
        unreplicated: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis = redis
        self._replicas = replicas
        self._timeout_ms = max(1, round(timeout_s * 1000))
        self._unreplicated = unreplicated
        self._warned_at = -WARN_EVERY_S
        self._online: dict[str, tuple[float, int]] = {}  # primary → (when asked, replicas online)

    async def run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's reply, once replicated as wanted (or not, counted, after the timeout)."""
        if isinstance(self._redis, RedisCluster):
            replicated, reply = await self._on_cluster(self._redis, script, keys, args)
        else:
            replicated, reply = await self._on_standalone(self._redis, script, keys, args)
        if not replicated:
            self._count_unreplicated(keys[0])
        return reply

    async def _on_standalone(
        self, redis: Redis, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> tuple[bool, Any]:
        wanted = await self._wanted("", lambda: redis.info("replication"))
        if wanted == 0:
            return True, await script(keys=keys, args=args)
        for _ in range(2):  # the second time after loading the script on a server that lacked it
            async with redis.pipeline(transaction=False) as pipe:  # one connection: WAIT covers the script's write
                # EVALSHA as is: a pipeline given the script object would ask SCRIPT EXISTS before every append
                pipe.evalsha(script.sha, len(keys), *keys, *args)
                pipe.execute_command("WAIT", wanted, self._timeout_ms)
                reply, acknowledged = await pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError):  # not run: load it and send both again
                await redis.script_load(script.script)
                continue
            if isinstance(reply, Exception):
                raise reply
            return not isinstance(acknowledged, Exception) and int(acknowledged) >= wanted, reply
        raise NoScriptError(f"script {script.sha} could not be loaded")

    async def _on_cluster(
        self, redis: RedisCluster, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> tuple[bool, Any]:
        try:
            primary = redis.get_node_from_key(keys[0])
        except SlotNotCoveredError:
            primary = None
        if primary is None:  # no view of the slot yet: the cluster client finds it
            return False, await script(keys=keys, args=args, client=redis)
        wanted = await self._wanted(primary.name, lambda: primary.execute_command("INFO", "replication"))
        if wanted == 0:
            return True, await script(keys=keys, args=args, client=redis)
        for _ in range(2):  # the second time after loading the script on a node that lacked it
            commands = [
                PipelineCommand(0, "EVALSHA", script.sha, len(keys), *keys, *args),
                PipelineCommand(1, "WAIT", wanted, self._timeout_ms),
            ]
            await primary.execute_pipeline(commands)
            reply, acknowledged = commands[0].result, commands[1].result
            if isinstance(reply, NoScriptError):
                await primary.execute_command("SCRIPT", "LOAD", script.script)
                continue
            if isinstance(reply, REDIRECTED):  # not run there: the cluster client follows the slot
                return False, await script(keys=keys, args=args, client=redis)
            if isinstance(reply, Exception):
                raise reply
            return not isinstance(acknowledged, Exception) and int(acknowledged) >= wanted, reply
        raise NoScriptError(f"script {script.sha} could not be loaded on {primary.name}")

    async def _wanted(self, primary: str, replication: Callable[[], Awaitable[Any]]) -> int:
        """How many replicas to wait for on ``primary``: the setting, or (auto) 1 if it has a replica online."""
        if self._replicas is not None:
            return self._replicas
        now = time.monotonic()
        asked_at, online = self._online.get(primary, (-REPLICAS_FRESH_S, 0))
        if now - asked_at >= REPLICAS_FRESH_S:
            try:
                online = replicas_online(await replication())
            except RedisError as exc:  # the write itself will tell whether the node is there; keep what we knew
                log.debug("INFO replication of %s failed: %s", primary or "redis", exc)
            self._online[primary] = (now, online)
        return min(1, online)

    def _count_unreplicated(self, key: str) -> None:
        self._unreplicated()
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                "an append was acknowledged before a Redis replica confirmed it (%s ms passed; key %s): a failover"
                " now may hide its lines",
                self._timeout_ms,
                key,
            )


def replicas_online(info: Any) -> int:
    """From ``INFO replication`` (parsed): its ``slaveN`` entries whose state is ``online``. A replica still
    loading its first copy is not (it confirms nothing until loaded, and holds nothing a failover could keep)."""
    if not isinstance(info, dict):
        return 0
    return sum(
        1
        for name, replica in info.items()
        if str(name).startswith("slave") and isinstance(replica, dict) and replica.get("state") == "online"
    )
