"""A local Redis + Elasticsearch stack for development and CI, without Docker.

Everything lives under one state directory (env ``JOBLENS_STACK_DIR``, default
``/var/tmp/joblens-stack``; it must be outside root's home because Elasticsearch
runs as an unprivileged user when we are root)::

    es/elasticsearch-<version>/   unpacked distribution (Maven Central integ-test-zip)
    es/data/  es/logs/  es/tmp/  es/run/elasticsearch.pid
    redis/                        Redis working dir, log and pidfile
    stack.json                    chosen ports and the pids this package started
    stack.lock                    serialises concurrent up/down calls

Ports are picked once (free loopback ports) and reused by later ``up`` calls.
``down`` stops exactly the pids recorded in ``stack.json``. Redis does not persist (tests
and development only); Elasticsearch keeps its data dir across restarts, so generated
benchmark data can be reused (tests use their own index prefixes and delete them).
Only the modules of the integ-test-zip distribution are present (no painless,
reindex/delete-by-query, data streams, ingest, mapper-extras, analysis-common).

Modules, one concern each (the Redis and Elasticsearch functions take one node's
paths and ports, so more nodes can be added later):

    errors         ``StackError``
    paths          the state dir and its layout (``Paths``), ``State`` (stack.json), the lock
    ports          ``free_port()`` (the repo's one free-port helper), ``Ports`` and their choice
    processes      pid checks, pidfiles, stopping pids, log tails
    redis          one redis-server: ``RedisPaths``, starting, probing
    elasticsearch  one node: ``EsPaths``, Java, the Maven download, unpacking, config, the unprivileged
                   user, start, readiness; ``ELASTICSEARCH_VERSION``
    stack          ``up``, ``down``, ``status``, ``info``, ``StackInfo``, ``StackError``
    cluster        the cluster stack under ``<state dir>/cluster/``: a Redis Cluster (3 primaries, 3 replicas)
                   and 3 Elasticsearch nodes; ``up``, ``down``, ``status``, ``info``, ``ClusterInfo``
    commands       ``add_stack_commands`` (``joblens stack up|down|status|env [--cluster]``) and ``main``

CLI: ``add_stack_commands`` registers ``stack up|down|status|env [--cluster]`` on an argparse
parser; ``python -m devstack up|down|status|env [--cluster]`` works standalone.
"""
