"""The ``stack up|down|status|env`` commands: for ``joblens stack …`` and ``python -m devstack …``.

``--cluster`` acts on the cluster stack (`devstack.cluster`) instead of the single-node one; the two are
independent and may run side by side.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from devstack import cluster
from devstack.stack import StackError, StackInfo, down, info, status, up


def _env_lines(redis_url: str, elasticsearch_url: str, *extra: str) -> str:
    return "\n".join(
        [f"export JOBLENS_REDIS_URL={redis_url}", f"export JOBLENS_ELASTICSEARCH_URL={elasticsearch_url}", *extra]
    )


def _stack_env(stack: StackInfo) -> str:
    return _env_lines(stack.redis_url, stack.elasticsearch_url)


def _cluster_env(stack: cluster.ClusterInfo) -> str:
    # Replicas: every shard of a log index has a copy on a second node, so one node may die.
    return _env_lines(stack.redis_url, stack.elasticsearch_url, "export JOBLENS_INDEX_REPLICAS=1")


def _cmd_up(args: argparse.Namespace) -> int:
    if args.cluster:
        cluster_stack, started = cluster.up()
        lines, urls = _cluster_env(cluster_stack), (cluster_stack.redis_url, cluster_stack.elasticsearch_url)
    else:
        stack, started = up()
        lines, urls = _stack_env(stack), (stack.redis_url, stack.elasticsearch_url)
    if args.env:
        print(lines)
        print(f"export JOBLENS_STACK_STARTED={int(started)}")
        return 0
    print(f"redis: {urls[0]}")
    print(f"elasticsearch: {urls[1]}")
    print("started" if started else "already running", file=sys.stderr)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    if args.cluster:
        cluster.down()
        print("cluster stack stopped", file=sys.stderr)
    else:
        down()
        print("stack stopped", file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    for part, state in (cluster.status() if args.cluster else status()).items():
        print(f"{part}: {state}")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    if args.cluster:
        cluster_stack = cluster.info()
        if cluster_stack is None:
            raise StackError("the cluster stack is not running; start it with `joblens stack up --cluster`")
        print(_cluster_env(cluster_stack))
        return 0
    stack = info()
    if stack is None:
        raise StackError("the stack is not running; start it with `joblens stack up`")
    print(_stack_env(stack))
    return 0


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn StackError into its message on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except StackError as exc:
            print(f"joblens stack: {exc}", file=sys.stderr)
            return 1

    return run


def _with_cluster_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the cluster stack: Redis Cluster (3 primaries + 3 replicas) and 3 Elasticsearch nodes",
    )
    return parser


def add_stack_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `stack up|down|status|env [--cluster]`; each sets `run(args) -> int` (the exit code)."""
    stack = subparsers.add_parser("stack", help="local Redis + Elasticsearch (no Docker)")
    commands = stack.add_subparsers(dest="stack_command", required=True, metavar="{up,down,status,env}")
    up_parser = _with_cluster_flag(commands.add_parser("up", help="start the stack (idempotent) and print its URLs"))
    up_parser.add_argument("--env", action="store_true", help="print shell `export` lines instead")
    up_parser.set_defaults(run=_guarded(_cmd_up))
    _with_cluster_flag(commands.add_parser("down", help="stop what `up` started")).set_defaults(run=_guarded(_cmd_down))
    _with_cluster_flag(commands.add_parser("status", help="show each part's state")).set_defaults(
        run=_guarded(_cmd_status)
    )
    _with_cluster_flag(commands.add_parser("env", help="print `export JOBLENS_*=...` lines")).set_defaults(
        run=_guarded(_cmd_env)
    )


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m devstack up|down|status|env [--cluster]`."""
    parser = argparse.ArgumentParser(prog="python -m devstack")
    add_stack_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["stack", *(sys.argv[1:] if argv is None else argv)])
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
