"""Faults on the clusters (bounded, loopback only), under load: an Elasticsearch node dies mid-ingest and mid-tail;
a Redis primary dies and its replica takes over; a replica promoted without the latest writes.

The counts are those of `test_faults.py`: lines acknowledged and found exactly once, the statuses (only JSON
503s besides the 200s), and the recovery time; and a tailer and a live stream (SSE) each see every acknowledged
line once, in order. The nodes killed belong to a private cluster stack of this module (its own state dir, a
short Redis ``cluster-node-timeout``), so the shared cluster other tests use is never disturbed; each test
restarts what it killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import pytest
from aiohttp.test_utils import TestClient
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from devstack import cluster
from devstack.errors import StackError
from devstack.ports import LOOPBACK
from devstack.processes import pid_alive
from service.app import redis_cluster_client
from service.settings import Settings, redis_cluster_seeds
from service.stores.keyspace import SpaceKeys
from service.stores.redis_api_keys import ApiKeyStore
from tests.helpers import AppFactory, eventually, metric_value
from tests.logs_helpers import all_seqs, wait_watermark_settles

RECOVERY_LIMIT_S = 5.0
FAULT_CLUSTER_DIR = "/var/tmp/joblens-fault-cluster"  # noqa: S108 - reused between runs: Elasticsearch stays unpacked
FAULT_NODE_TIMEOUT_MS = 1000  # loopback: a Redis node silent for 1 s is dead; its replica takes over soon after
KINDS_REDIS = {"append", "get", "progress", "list", "tail", "stream"}
KINDS_ELASTICSEARCH = {"append", "tail", "stream"}

pytestmark = pytest.mark.timeout(420)  # the first start unpacks three Elasticsearch nodes


@pytest.fixture(scope="module")
def fault_cluster() -> Iterator[cluster.ClusterInfo]:
    """A private cluster stack for this module (stopped at its end; its data dir is kept for the next run)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JOBLENS_STACK_DIR", FAULT_CLUSTER_DIR)
        env.setenv("JOBLENS_REDIS_CLUSTER_NODE_TIMEOUT_MS", str(FAULT_NODE_TIMEOUT_MS))
        info, _ = cluster.up()
        try:
            yield info
        finally:
            cluster.down()


@dataclass
class LoadRecord:
    acknowledged: list[tuple[int, int]] = field(default_factory=list)  # (firstSeq, lastSeq) per 200
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    successes: list[tuple[str, float]] = field(default_factory=list)  # (request kind, monotonic time)
    tailed: list[int] = field(default_factory=list)
    streamed: list[int] = field(default_factory=list)
    stream_reconnects: int = 0
    repaired: int = 0  # appends answered 503 by the seq repair ("repaired; retry")
    appending: int = 0  # appends in flight
    may_append: asyncio.Event = field(default_factory=asyncio.Event)  # cleared: writers start no new append

    def __post_init__(self) -> None:
        self.may_append.set()

    def acknowledged_seqs(self) -> list[int]:
        return sorted(seq for first, last in self.acknowledged for seq in range(first, last + 1))

    def first_success_after(self, since: float, kinds: set[str]) -> float:
        """Seconds from ``since`` until every kind of request had succeeded again."""
        return max(min(t for kind, t in self.successes if kind == k and t >= since) - since for k in kinds)

    def longest_gap(self, since: float, until: float, kinds: set[str]) -> float:
        """The longest time, from ``since`` to ``until``, that some kind of request went without a success."""
        gaps = []
        for kind in kinds:
            times = [since, *sorted(t for k, t in self.successes if k == kind and since <= t <= until), until]
            gaps.append(max(b - a for a, b in itertools.pairwise(times)))
        return max(gaps)


@dataclass
class Target:
    client: TestClient[Any, Any]
    headers: dict[str, str]
    space_id: str
    job_id: str


async def _call(record: LoadRecord, kind: str, request: Awaitable[Any]) -> Any:
    response = await request
    record.statuses[response.status] += 1
    if response.content_type != "application/json":
        record.unexpected.append(f"{kind}: {response.status} {response.content_type}")
        return None
    payload = await response.json()
    if response.status == 200:
        record.successes.append((kind, time.monotonic()))
        return payload
    if response.status != 503 or set(payload) != {"error"}:
        record.unexpected.append(f"{kind}: {response.status} {payload}")
    elif "repaired" in payload["error"]:
        record.repaired += 1
    return None


async def _writers(target: Target, record: LoadRecord, stop: asyncio.Event, count: int = 3) -> None:
    rng = random.Random(11)
    url = f"/api/v1/jobs/{target.job_id}/logs"

    async def writer(number: int) -> None:
        while not stop.is_set():
            await record.may_append.wait()
            lines = [{"message": f"w{number} line {i}", "level": "info"} for i in range(rng.randint(10, 120))]
            record.appending += 1
            try:
                answer = await _call(record, "append", target.client.post(url, json=lines, headers=target.headers))
            finally:
                record.appending -= 1
            if isinstance(answer, dict):
                record.acknowledged.append((answer["firstSeq"], answer["lastSeq"]))
            else:
                await asyncio.sleep(0.05)

    await asyncio.gather(*(writer(n) for n in range(count)))


async def _readers(target: Target, record: LoadRecord, stop: asyncio.Event) -> None:
    client, headers = target.client, target.headers

    async def reader() -> None:
        while not stop.is_set():
            await _call(record, "get", client.get(f"/api/v1/jobs/{target.job_id}", headers=headers))
            await _call(record, "progress", client.get(f"/api/v1/jobs/{target.job_id}/progress", headers=headers))
            await _call(record, "list", client.get(f"/api/v1/spaces/{target.space_id}/jobs?limit=5", headers=headers))
            await asyncio.sleep(0.02)

    await asyncio.gather(reader(), reader())


async def _tail(target: Target, record: LoadRecord, done: asyncio.Event) -> None:
    """Follow ``after = newestSeq`` until the writers are done and a page comes back empty."""
    after = 0
    while True:
        finished = done.is_set()
        params = {"after": after, "limit": 500}
        page = await _call(
            record,
            "tail",
            target.client.get(f"/api/v1/jobs/{target.job_id}/logs", params=params, headers=target.headers),
        )
        if isinstance(page, dict) and page["logs"]:
            record.tailed.extend(line["seq"] for line in page["logs"])
            after = page["cursor"]["newestSeq"]
            continue
        if finished and isinstance(page, dict):
            return
        await asyncio.sleep(0.05)


async def _stream(target: Target, record: LoadRecord, done: asyncio.Event, top: Callable[[], int]) -> None:
    """Follow the live stream (SSE) from the start, resuming by Last-Event-ID whenever it is cut (an ``error``
    event, a 503, a dropped connection), until the writers are done and it has passed ``top()``."""
    last_id = 0

    def finished() -> bool:
        return done.is_set() and last_id >= top()

    while not finished():
        headers = {**target.headers, "Last-Event-ID": str(last_id)}
        try:
            async with target.client.get(f"/api/v1/jobs/{target.job_id}/logs/stream", headers=headers) as response:
                if response.status != 200:  # refused at the start (a store is down): JSON, like any answer
                    record.statuses[response.status] += 1
                    if response.status != 503 or response.content_type != "application/json":
                        record.unexpected.append(f"stream: {response.status} {response.content_type}")
                    await asyncio.sleep(0.1)
                    continue
                async for kind, data, event_id in _events(response.content, finished):
                    if kind == "logs":
                        record.streamed.extend(line["seq"] for line in data["logs"])
                        record.successes.append(("stream", time.monotonic()))
                        last_id = event_id if event_id is not None else last_id
                    if kind in ("error", "reconnect"):
                        break
        except (TimeoutError, ConnectionError, OSError):
            pass
        if not finished():
            record.stream_reconnects += 1
            await asyncio.sleep(0.05)


async def _events(content: Any, finished: Callable[[], bool]) -> AsyncIterator[tuple[str, Any, int | None]]:
    """The stream's events until it ends or ``finished()`` holds (checked between events and while none comes:
    once every line arrived an idle stream sends only heartbeats, which are comments)."""
    kind, data, event_id = "message", b"", None
    while not finished():
        try:
            raw = await asyncio.wait_for(content.readline(), 0.2)  # a readline cancelled while waiting reads nothing
        except TimeoutError:
            continue
        if not raw:
            return
        line = raw.rstrip(b"\n")
        if not line:
            if data:
                yield kind, orjson.loads(data), event_id
            kind, data, event_id = "message", b"", None
        elif line.startswith(b"event: "):
            kind = line[7:].decode()
        elif line.startswith(b"data: "):
            data += line[6:]
        elif line.startswith(b"id: "):
            event_id = int(line[4:])


def _assert_exactly_once(record: LoadRecord, stored: list[int]) -> None:
    acknowledged = record.acknowledged_seqs()
    assert record.unexpected == []
    assert len(acknowledged) == len(set(acknowledged))
    assert stored == acknowledged, "stored lines differ from acknowledged ones"
    assert record.tailed == acknowledged, "the tailer skipped, repeated or saw unacknowledged lines"
    assert record.streamed == acknowledged, "the stream skipped, repeated or sent unacknowledged lines"


@contextlib.asynccontextmanager
async def _under_load(target: Target, record: LoadRecord, readers: bool) -> AsyncIterator[None]:
    """Writers, a tailer, a live stream (and readers) run for the block, then until every acknowledged line was
    tailed and streamed."""
    stop, done = asyncio.Event(), asyncio.Event()

    def top() -> int:
        return max((last for _, last in record.acknowledged), default=0)

    followers = [
        asyncio.create_task(_tail(target, record, done)),
        asyncio.create_task(_stream(target, record, done, top)),
    ]
    load = [asyncio.create_task(_writers(target, record, stop))]
    if readers:
        load.append(asyncio.create_task(_readers(target, record, stop)))
    try:
        await asyncio.sleep(1.5)
        yield
        await asyncio.sleep(3)
    finally:
        stop.set()
        await asyncio.gather(*load)
    await wait_watermark_settles(target.client, target.headers, target.job_id, top())
    done.set()
    await asyncio.wait_for(asyncio.gather(*followers), 60)


# --------------------------------------------------------------------------- set-up


def _fault_settings(info: cluster.ClusterInfo, **overrides: Any) -> dict[str, Any]:
    return {
        "redis_url": info.redis_url,
        "elasticsearch_urls": info.elasticsearch_urls,
        "index_replicas": 1,
        "log_lease_s": 3.0,
        "connect_timeout_s": 60,
        **overrides,
    }


async def _target(make_client: AppFactory, info: cluster.ClusterInfo, **overrides: Any) -> Target:
    """An app instance on the private clusters (emptied first) and a job to load."""
    seeds = redis_cluster_seeds(info.redis_url)
    assert seeds
    direct = redis_cluster_client(info.redis_url, seeds)
    try:
        await direct.flushall()
        store = ApiKeyStore(direct)  # type: ignore[arg-type]  # the stores take either client (keyspace.RedisClient)
        space = await store.create_space("cluster-faults")
        api_key, _ = await store.create_key(space["id"], ("jobs:create", "jobs:read", "jobs:log"), "load")
    finally:
        await direct.aclose()
    client = await make_client(**_fault_settings(info, **overrides))
    headers = {"x-api-key": api_key}
    created = await client.post(f"/api/v1/spaces/{space['id']}/jobs", json={"name": "under-fire"}, headers=headers)
    job = await created.json()
    assert created.status == 201, job
    return Target(client, headers, space["id"], job["id"])


async def _drop_indices(info: cluster.ClusterInfo, prefix: str) -> None:
    es = AsyncElasticsearch(list(info.elasticsearch_urls))
    try:
        created = await es.indices.get(index=f"{prefix}-*", allow_no_indices=True)
        if created:
            await es.indices.delete(index=",".join(created))
    finally:
        await es.close()


def _state() -> cluster.ClusterState:
    return cluster.load(cluster.cluster_paths())


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


# --------------------------------------------------------------------------- Elasticsearch


async def _primary_es_node(info: cluster.ClusterInfo, prefix: str) -> int:
    """The number (1…) of the node holding the primary of the test's log index (one job: one index, one shard),
    once its replica is in sync: a primary without one cannot die without losing lines, in any design."""
    es = AsyncElasticsearch(list(info.elasticsearch_urls))
    try:
        await es.options(request_timeout=40).cluster.health(index=f"{prefix}-*", wait_for_status="green", timeout="30s")
        answer = await es.cat.shards(format="json", h="index,prirep,node,state")
        shards = cast(list[dict[str, str]], answer.body)
    finally:
        await es.close()
    primaries = {row["node"] for row in shards if row["prirep"] == "p" and row["index"].startswith(f"{prefix}-")}
    assert len(primaries) == 1, shards
    return int(primaries.pop().rsplit("-", 1)[1])


async def test_an_elasticsearch_node_dies_mid_ingest_and_mid_tail(
    make_client: AppFactory, fault_cluster: cluster.ClusterInfo, settings: Settings
) -> None:
    target = await _target(make_client, fault_cluster)
    record = LoadRecord()
    try:
        async with _under_load(target, record, readers=False):
            number = await _primary_es_node(fault_cluster, settings.index_prefix)
            killed_at = time.monotonic()
            await asyncio.to_thread(_kill, _state().es_pids[number - 1])
            await asyncio.sleep(RECOVERY_LIMIT_S)  # two nodes serve; the dead one stays dead meanwhile
        ended_at = time.monotonic()
        recovery = record.longest_gap(killed_at, ended_at, KINDS_ELASTICSEARCH)
        assert recovery <= RECOVERY_LIMIT_S
        _assert_exactly_once(record, await all_seqs(target.client, target.headers, target.job_id))
        print(
            f"es node {number} killed: {len(record.acknowledged_seqs())} lines acknowledged and found once, "
            f"{dict(record.statuses)}, longest stretch without a success {recovery:.2f}s, "
            f"stream resumed {record.stream_reconnects} times"
        )
    finally:
        await asyncio.to_thread(cluster.up)  # the node comes back for the next test
        await _drop_indices(fault_cluster, settings.index_prefix)


# --------------------------------------------------------------------------- Redis


def _redis_cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", LOOPBACK, "-p", str(port), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout


async def _slot_owner(info: cluster.ClusterInfo, key: str) -> int:
    """The port of the primary serving ``key``, as the cluster says now."""
    seeds = redis_cluster_seeds(info.redis_url)
    assert seeds
    client = RedisCluster(host=seeds[0][0], port=seeds[0][1], require_full_coverage=False)
    try:
        await client.initialize()
        node = client.get_node_from_key(key)
        assert node is not None
        return int(node.port)
    finally:
        await client.aclose()


def _replica_of(primary_port: int) -> int:
    ports = _state().redis_ports
    nodes = [line.split() for line in _redis_cli(primary_port, "CLUSTER", "NODES").splitlines()]
    primary_id = next(fields[0] for fields in nodes if "myself" in fields[2])
    replicas = [int(f[1].split("@")[0].rsplit(":", 1)[1]) for f in nodes if f[3] == primary_id and "fail" not in f[2]]
    assert replicas, nodes
    assert replicas[0] in ports
    return replicas[0]


async def _wait_promoted(port: int) -> float:
    """Wait until the node on ``port`` is a primary the cluster agrees on (its slots served); when that was."""
    deadline = time.monotonic() + 30
    while True:
        roles = await asyncio.to_thread(_roles_or_empty, port)
        if roles.get(port) == "master" and cluster.redis_cluster_ok(port):
            return time.monotonic()
        assert time.monotonic() < deadline, "the replica was not promoted"
        await asyncio.sleep(0.05)


def _roles_or_empty(port: int) -> dict[int, str]:
    try:
        return cluster.node_roles(port)
    except StackError:
        return {}


def _pid_of(port: int) -> int:
    state = _state()
    return state.redis_pids[state.redis_ports.index(port)]


async def test_a_redis_primary_dies_and_its_replica_takes_over(
    make_client: AppFactory, fault_cluster: cluster.ClusterInfo, settings: Settings
) -> None:
    target = await _target(make_client, fault_cluster)
    record = LoadRecord()
    primary = await _slot_owner(fault_cluster, SpaceKeys(target.space_id).job(target.job_id))
    replica = await asyncio.to_thread(_replica_of, primary)
    await _in_sync(primary, replica)
    try:
        async with _under_load(target, record, readers=True):
            killed_at = time.monotonic()
            await asyncio.to_thread(_kill, _pid_of(primary))
            promoted_at = await _wait_promoted(replica)
        assert record.statuses[503] > 0, "the failover was not observed"
        recovery = record.first_success_after(promoted_at, KINDS_REDIS)
        assert recovery <= RECOVERY_LIMIT_S
        _assert_exactly_once(record, await all_seqs(target.client, target.headers, target.job_id))
        print(
            f"redis primary {primary} killed, replica {replica} promoted after {promoted_at - killed_at:.2f}s: "
            f"{len(record.acknowledged_seqs())} lines acknowledged and found once, {dict(record.statuses)}, "
            f"every kind of request succeeded {recovery:.2f}s after the promotion "
            f"({promoted_at - killed_at + recovery:.2f}s after the kill), seq repairs {record.repaired}, "
            f"stream resumed {record.stream_reconnects} times"
        )
    finally:
        await asyncio.to_thread(cluster.up)  # the old primary comes back, as a replica
        await _drop_indices(fault_cluster, settings.index_prefix)


async def _unreplicated_appends(client: TestClient[Any, Any]) -> float:
    return await metric_value(client, "joblens_log_appends_unreplicated_total")


async def _replica_connection(port: int) -> Redis:
    """One connection to a replica that may read the keys of the slots it replicates (READONLY)."""
    replica = Redis(host=LOOPBACK, port=port, single_connection_client=True)
    await replica.execute_command("READONLY")  # type: ignore[no-untyped-call]
    return replica


async def test_an_append_is_answered_once_a_replica_holds_its_finish(
    make_client: AppFactory, fault_cluster: cluster.ClusterInfo, settings: Settings
) -> None:
    """`WAIT` on the finishing connection: when the answer comes, the replica has the durability watermark that
    covers the append, so a failover right then keeps the lines. A replica that does not answer (stopped) holds
    no append up longer than JOBLENS_REDIS_WAIT_TIMEOUT_S, and the metric counts what went unconfirmed."""
    target = await _target(make_client, fault_cluster, redis_wait_timeout_s=0.3)
    keys = SpaceKeys(target.space_id)
    primary = await _slot_owner(fault_cluster, keys.job(target.job_id))
    replica_port = await asyncio.to_thread(_replica_of, primary)
    await _in_sync(primary, replica_port)
    replica = await _replica_connection(replica_port)
    url = f"/api/v1/jobs/{target.job_id}/logs"
    lines = [{"message": f"line {i}"} for i in range(5)]
    try:
        for _ in range(30):
            answer = await target.client.post(url, json=lines, headers=target.headers)
            assert answer.status == 200, await answer.text()
            last_seq = (await answer.json())["lastSeq"]
            assert int(await replica.get(keys.log_durable(target.job_id)) or 0) >= last_seq
        assert await _unreplicated_appends(target.client) == 0

        os.kill(_pid_of(replica_port), signal.SIGSTOP)
        try:
            answer = await target.client.post(url, json=lines, headers=target.headers)
        finally:
            os.kill(_pid_of(replica_port), signal.SIGCONT)
        assert answer.status == 200, await answer.text()  # answered, after the wait, and counted
        assert await _unreplicated_appends(target.client) == 1
        stopped_last_seq = (await answer.json())["lastSeq"]
        await eventually(
            lambda: _replica_holds(replica, keys.log_durable(target.job_id), stopped_last_seq),
            "the replica to catch up",
        )
        answer = await target.client.post(url, json=lines, headers=target.headers)
        assert answer.status == 200
        assert await _unreplicated_appends(target.client) == 1
    finally:
        await replica.aclose()
        await _drop_indices(fault_cluster, settings.index_prefix)


def _replica_online(primary: int, replica: int) -> bool:
    return f"port={replica},state=online" in _redis_cli(primary, "INFO", "replication")


async def _in_sync(primary: int, replica: int) -> None:
    """After an earlier test's failover the old primary rejoins as a replica: until its first copy is loaded it
    holds nothing, and the cluster refuses to promote it ("disconnected from master for longer than allowed")."""
    await eventually(lambda: _replica_online(primary, replica), "the replica to be in sync", within_s=30)


async def _replica_holds(replica: Redis, key: str, seq: int) -> bool:
    return int(await replica.get(key) or 0) >= seq


async def test_a_replica_promoted_without_the_latest_writes_keeps_every_acknowledged_line(
    make_client: AppFactory, fault_cluster: cluster.ClusterInfo, settings: Settings
) -> None:
    """The replica stops hearing its primary (stopped, its replication link cut), appends are acknowledged on the
    primary alone, then the primary dies and that replica takes over: the seq counter is behind the index. The
    seq repair keeps every acknowledged line, and followers go on past the repaired range.

    Each append on the primary alone waits JOBLENS_REDIS_WAIT_TIMEOUT_S for the silent replica, is answered and
    counted. No append is in flight when the link is cut: one whose reservation reached the replica and whose
    finish did not would be abandoned at its lease's end although acknowledged (the known limit of a replica silent
    for the whole wait and then promoted, docs/operations.md)."""
    target = await _target(make_client, fault_cluster)
    record = LoadRecord()
    primary = await _slot_owner(fault_cluster, SpaceKeys(target.space_id).job(target.job_id))
    replica = await asyncio.to_thread(_replica_of, primary)
    await _in_sync(primary, replica)
    replica_pid = _pid_of(replica)
    try:
        async with _under_load(target, record, readers=False):
            record.may_append.clear()
            await eventually(lambda: record.appending == 0, "the appends in flight to finish")
            os.kill(replica_pid, signal.SIGSTOP)
            try:
                await asyncio.to_thread(_redis_cli, primary, "CLIENT", "KILL", "TYPE", "replica")
                record.may_append.set()
                lost_from = len(record.acknowledged)
                await eventually(lambda: len(record.acknowledged) >= lost_from + 3, "appends on the primary alone")
                lost = record.acknowledged[lost_from:]
                await asyncio.to_thread(_kill, _pid_of(primary))
            finally:
                os.kill(replica_pid, signal.SIGCONT)
            await _wait_promoted(replica)
        assert lost, "no append was acknowledged while the replica was cut off"
        assert record.repaired > 0, "the seq repair was not needed"
        _assert_exactly_once(record, await all_seqs(target.client, target.headers, target.job_id))
        print(
            f"stale replica {replica} promoted: {sum(b - a + 1 for a, b in lost)} acknowledged lines unknown to it, "
            f"{len(record.acknowledged_seqs())} lines acknowledged and found once, {dict(record.statuses)}, "
            f"seq repairs {record.repaired}"
        )
    finally:
        await asyncio.to_thread(cluster.up)
        await _drop_indices(fault_cluster, settings.index_prefix)
