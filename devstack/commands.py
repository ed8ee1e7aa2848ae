"""The ``stack up|down|status|env`` commands: for ``joblens stack …`` and ``python -m devstack …``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from devstack.stack import StackError, StackInfo, down, info, status, up


def _env_lines(stack: StackInfo) -> str:
    return f"export JOBLENS_REDIS_URL={stack.redis_url}\nexport JOBLENS_ELASTICSEARCH_URL={stack.elasticsearch_url}"


def _cmd_up(args: argparse.Namespace) -> int:
    stack, started = up()
    if args.env:
        print(_env_lines(stack))
        print(f"export JOBLENS_STACK_STARTED={int(started)}")
        return 0
    print(f"redis: {stack.redis_url}")
    print(f"elasticsearch: {stack.elasticsearch_url}")
    print("started" if started else "already running", file=sys.stderr)
    return 0


def _cmd_down(_args: argparse.Namespace) -> int:
    down()
    print("stack stopped", file=sys.stderr)
    return 0


def _cmd_status(_args: argparse.Namespace) -> int:
    for part, state in status().items():
        print(f"{part}: {state}")
    return 0


def _cmd_env(_args: argparse.Namespace) -> int:
    stack = info()
    if stack is None:
        raise StackError("the stack is not running; start it with `joblens stack up`")
    print(_env_lines(stack))
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


def add_stack_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `stack up|down|status|env`; each sets `run(args) -> int` (the exit code)."""
    stack = subparsers.add_parser("stack", help="local Redis + Elasticsearch (no Docker)")
    commands = stack.add_subparsers(dest="stack_command", required=True, metavar="{up,down,status,env}")
    up_parser = commands.add_parser("up", help="start the stack (idempotent) and print its URLs")
    up_parser.add_argument("--env", action="store_true", help="print shell `export` lines instead")
    up_parser.set_defaults(run=_guarded(_cmd_up))
    commands.add_parser("down", help="stop what `up` started").set_defaults(run=_guarded(_cmd_down))
    commands.add_parser("status", help="show each part's state").set_defaults(run=_guarded(_cmd_status))
    commands.add_parser("env", help="print `export JOBLENS_*_URL=...` lines").set_defaults(run=_guarded(_cmd_env))


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m devstack up|down|status|env`."""
    parser = argparse.ArgumentParser(prog="python -m devstack")
    add_stack_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["stack", *(sys.argv[1:] if argv is None else argv)])
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)
