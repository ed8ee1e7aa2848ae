"""The terminal client: ``joblens jobs list|get``, ``joblens progress``, ``joblens logs``, ``joblens search``.

Built on `AsyncJoblens`; where it connects comes from `joblens_client.config`. Exit statuses (docs/client.md):
0 done (for ``logs -f`` and ``progress --watch``: the job completed), 1 an error (joblens refused or could not
be reached), 2 a usage or configuration error, 3 the job is dead, 4 the job was killed, 130 interrupted
(Ctrl-C), 141 the output was closed (``| head``), quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import orjson

from joblens_client.client import AsyncJoblens
from joblens_client.config import ConfigError, Target, resolve
from joblens_client.errors import JoblensError, Unauthorized
from joblens_client.records import Ended, Job, LogLine, LogPage, Progress, StatusChanged, iso_time
from joblens_client.render import (
    colour_wanted,
    job_details,
    jobs_table,
    log_line,
    progress_lines,
    progress_text,
    status_label,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DEAD, EXIT_KILLED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_PIPE_CLOSED = 130, 141  # as a shell reports SIGINT and SIGPIPE
EXIT_BY_STATUS = {"completed": EXIT_OK, "dead": EXIT_DEAD, "killed": EXIT_KILLED}
STATUSES = ("scheduled", "pending", "delivered", "running", "completed", "dead", "killed")
LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")
PAGE_MAX = 500  # the server's largest page
FOLLOW_TAIL_DEFAULT = 100
RELATIVE_TIME = re.compile(r"(\d+)([smhdw])")
UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageError(Exception):
    """Arguments that do not go together: exit status 2."""


@dataclass
class Output:
    """Standard output, flushed once per burst of lines (after the lines one stream event carried) rather than
    once per line, so that ``logs -f | grep`` sees lines at once without a write per line."""

    stream: TextIO
    colour: bool
    json: bool
    _flush_scheduled: bool = False
    _broken: BrokenPipeError | None = field(default=None, repr=False)

    def write(self, text: str) -> None:
        if self._broken is not None:
            raise self._broken
        self.stream.write(text + "\n")

    def line(self, line: LogLine) -> None:
        self.write(orjson.dumps(line.raw).decode() if self.json else log_line(line, self.colour))

    def flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        try:
            self.stream.flush()
        except BrokenPipeError as exc:  # raised at the next write, in the command's own flow
            self._broken = exc

    def flush(self) -> None:
        if self._broken is not None:
            raise self._broken
        self.stream.flush()


@dataclass
class Context:
    client: AsyncJoblens
    target: Target
    args: argparse.Namespace
    out: Output

    @property
    def space(self) -> str | None:
        return getattr(self.args, "space", None) or self.target.space

    def note(self, text: str) -> None:
        """A remark for a person watching (status changes): on a terminal's stderr only, never into a pipe."""
        if sys.stderr.isatty():
            print(text, file=sys.stderr, flush=True)


Action = Callable[[Context], Awaitable[int]]


def add_terminal_commands(commands: Any) -> None:
    """Add ``jobs``, ``progress``, ``logs`` and ``search`` to the ``joblens`` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the joblens service (default: JOBLENS_URL, or the profile's url)")
    common.add_argument("--profile", help="a profile of the config file (default: JOBLENS_PROFILE, default_profile)")
    common.add_argument("-o", "--output", choices=("text", "json"), default="text", help="text, or json (NDJSON)")

    jobs = commands.add_parser("jobs", help="list and show jobs").add_subparsers(title="jobs commands")
    listing = jobs.add_parser("list", parents=[common], help="list a space's jobs, newest first")
    listing.add_argument("--space", help="the space (default: the profile's, or the API key's own)")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--limit", type=int, help="at most this many (default 50, at most 100)")
    listing.add_argument("--offset", type=int)
    listing.set_defaults(run=command(list_jobs))
    get = jobs.add_parser("get", parents=[common], help="show a job and its events")
    get.add_argument("job", help="the job id")
    get.set_defaults(run=command(get_job))

    progress = commands.add_parser("progress", parents=[common], help="show a job's progress")
    progress.add_argument("job", help="the job id")
    progress.add_argument("--watch", action="store_true", help="follow it until the job ends (bars on a terminal)")
    progress.add_argument("--interval", type=float, default=1.0, help="seconds between looks with --watch")
    progress.set_defaults(run=command(show_progress))

    add_logs_command(commands, common)
    add_search_command(commands, common)


def add_logs_command(commands: Any, common: argparse.ArgumentParser) -> None:
    logs = commands.add_parser(
        "logs",
        parents=[common],
        help="print a job's log, or follow it (-f)",
        description="Print a job's log (all of it, or --tail N, --after/--before/--around SEQ), or follow it live"
        " with -f until the job ends; with -f the exit status tells how it ended (0 completed, 3 dead, 4 killed).",
    )
    logs.add_argument("job", help="the job id")
    logs.add_argument("-f", "--follow", action="store_true", help="follow the log live until the job ends")
    add_filters(logs)
    logs.add_argument("--tail", type=int, metavar="N", help="the newest N lines (with -f: default 100)")
    where = logs.add_mutually_exclusive_group()
    where.add_argument("--after", type=int, metavar="SEQ", help="the lines after this seq")
    where.add_argument("--before", type=int, metavar="SEQ", help="the lines before this seq")
    where.add_argument("--around", type=int, metavar="SEQ", help="the lines around this seq (its context)")
    logs.add_argument("--limit", type=int, metavar="N", help="at most N lines")
    logs.set_defaults(run=command(show_logs))


def add_search_command(commands: Any, common: argparse.ArgumentParser) -> None:
    search = commands.add_parser("search", parents=[common], help="search the logs of every job of a space")
    search.add_argument("--space", help="the space (default: the profile's, or the API key's own)")
    add_filters(search)
    search.add_argument("--name", help="only jobs of this name")
    search.add_argument("--since", help="an ISO time, or how long ago: 90s, 15m, 2h, 3d, 1w")
    search.add_argument("--until", help="an ISO time, or how long ago")
    search.add_argument("--limit", type=int, default=100, metavar="N", help="at most N lines (default 100)")
    search.set_defaults(run=command(search_logs))


def add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--level", action="append", metavar="LEVEL[,LEVEL]", help=f"only these levels ({', '.join(LEVELS)})"
    )
    parser.add_argument("-q", "--query", dest="q", help='words the message holds (all of them; "a phrase")')


def command(action: Action) -> Callable[[argparse.Namespace], int]:
    """A command's entry point: configuration, a client, the exit status, and errors as one line each."""

    def run(args: argparse.Namespace) -> int:
        try:
            target = resolve(args.url, args.profile)
            out = Output(sys.stdout, colour_wanted(sys.stdout.isatty()), args.output == "json")
            return asyncio.run(_run(action, target, args, out))
        except (ConfigError, UsageError, ValueError) as exc:
            print(f"joblens: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Unauthorized as exc:
            print(f"joblens: {exc.message}; check JOBLENS_API_KEY or the profile's key", file=sys.stderr)
            return EXIT_ERROR
        except JoblensError as exc:
            print(f"joblens: {exc}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BrokenPipeError:
            return pipe_closed()

    return run


async def _run(action: Action, target: Target, args: argparse.Namespace, out: Output) -> int:
    async with AsyncJoblens(target.url, target.api_key) as client:
        code = await action(Context(client, target, args, out))
        out.flush()
        return code


def pipe_closed() -> int:
    """The reader went away (``| head``): no traceback, and no second error when Python flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE_CLOSED


def levels(args: argparse.Namespace) -> list[str] | None:
    given = [part.strip().lower() for value in args.level or () for part in value.split(",") if part.strip()]
    unknown = sorted(set(given) - set(LEVELS))
    if unknown:
        raise UsageError(f"--level {unknown[0]!r}: choose from {', '.join(LEVELS)}")
    return given or None


# ---- jobs and progress ----------------------------------------------------------------------------------------


async def list_jobs(ctx: Context) -> int:
    args = ctx.args
    jobs = await ctx.client.list_jobs(space=ctx.space, status=args.status, limit=args.limit, offset=args.offset)
    if ctx.out.json:
        for job in jobs:
            ctx.out.write(orjson.dumps(job.raw).decode())
    else:
        for row in jobs_table(jobs, ctx.out.colour):
            ctx.out.write(row)
    return EXIT_OK


async def get_job(ctx: Context) -> int:
    job = await ctx.client.get_job(ctx.args.job)
    if ctx.out.json:
        ctx.out.write(orjson.dumps(job.raw).decode())
    else:
        for row in job_details(job, ctx.out.colour, orjson.dumps(job.payload)):
            ctx.out.write(row)
    return EXIT_OK


async def show_progress(ctx: Context) -> int:
    client, job_id = ctx.client, ctx.args.job
    if not ctx.args.watch:
        progress = await client.get_progress(job_id)
        for row in [orjson.dumps(progress.raw).decode()] if ctx.out.json else progress_text(progress):
            ctx.out.write(row)
        return EXIT_OK
    watch = ProgressWatch(ctx.out, ctx.out.stream.isatty() and not ctx.out.json)
    while True:
        job, progress = await asyncio.gather(client.get_job(job_id), client.get_progress(job_id))
        watch.show(job, progress)
        if job.ended:
            watch.done()
            ctx.note(f"joblens: job {job.status}")
            return EXIT_BY_STATUS[job.status]
        await asyncio.sleep(ctx.args.interval)


@dataclass
class ProgressWatch:
    """``progress --watch``: on a terminal, bars redrawn in place; otherwise a line (or a JSON record) per change."""

    out: Output
    redraw: bool
    _drawn: int = 0
    _last: Any = None

    def show(self, job: Job, progress: Progress) -> None:
        seen = (job.status, progress.raw)
        if seen == self._last:
            return
        self._last = seen
        if self.redraw:
            self._draw(job, progress)
        elif self.out.json:
            self.out.write(orjson.dumps({"status": job.status, **progress.raw}).decode())
        else:
            rows = progress_text(progress)
            self.out.write(f"{job.status} {rows[0]}")
            for row in rows[1:]:
                self.out.write(row)
        self.out.flush()

    def _draw(self, job: Job, progress: Progress) -> None:
        columns = shutil.get_terminal_size().columns
        unicode = (self.out.stream.encoding or "").lower().replace("-", "").startswith("utf")
        rows = progress_lines(progress, job.status, columns, self.out.colour, unicode)
        # back to the first row drawn last time, and clear from there: the bars are drawn again in place
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.out.stream.write(up + "\x1b[J" + "\n".join(rows) + "\n")
        self._drawn = len(rows)

    def done(self) -> None:
        if self.redraw:
            self.out.flush()


# ---- logs -----------------------------------------------------------------------------------------------------


async def show_logs(ctx: Context) -> int:
    args = ctx.args
    for name in ("tail", "limit"):
        if getattr(args, name) is not None and getattr(args, name) < (0 if name == "tail" else 1):
            raise UsageError(f"--{name} must be a positive number")
    if args.follow:
        return await follow_logs(ctx)
    filters: dict[str, Any] = {"level": levels(args), "q": args.q, "highlight": bool(args.q) and ctx.out.colour}
    if args.around is not None:
        lines = (await ctx.client.read_logs(args.job, around=args.around, limit=args.limit, **filters)).lines
    elif args.tail is not None or (args.before is not None and args.limit is not None):
        # the newest N (before a seq): read backwards, kept in memory (N lines at most) to print in order
        count = args.tail if args.tail is not None else args.limit
        lines = await newest_lines(ctx.client, args.job, args.before, count, filters)
    else:
        await forward(ctx, args.after or 0, args.before, args.limit, filters)  # printed page by page
        return EXIT_OK
    for line in lines:
        ctx.out.line(line)
    return EXIT_OK


async def newest_lines(
    client: AsyncJoblens, job_id: str, before: int | None, count: int, filters: dict[str, Any]
) -> list[LogLine]:
    """The newest ``count`` lines (before ``before``), ascending: pages read backwards, then put in order."""
    pages: list[LogPage] = []
    found = 0
    while found < count:
        page = await client.read_logs(job_id, before=before, limit=min(count - found, PAGE_MAX), **filters)
        pages.append(page)
        found += len(page.lines)
        if not page.cursor.has_more or page.cursor.oldest_seq is None:
            break
        before = page.cursor.oldest_seq
    return [line for page in reversed(pages) for line in page.lines]


async def forward(ctx: Context, after: int, before: int | None, limit: int | None, filters: dict[str, Any]) -> None:
    """Print the lines after ``after`` (below ``before``, at most ``limit``) as the pages arrive."""
    printed = 0
    async for page in ctx.client.pages(ctx.args.job, after=after, limit=PAGE_MAX, **filters):
        for line in page.lines:
            if (before is not None and line.seq >= before) or (limit is not None and printed >= limit):
                return
            ctx.out.line(line)
            printed += 1


async def follow_logs(ctx: Context) -> int:
    args = ctx.args
    if args.before is not None or args.around is not None:
        raise UsageError("-f follows from --after SEQ or from --tail N; --before and --around read history")
    tail = FOLLOW_TAIL_DEFAULT if args.tail is None else args.tail
    items = ctx.client.follow(args.job, after=args.after, tail=tail, level=levels(args), q=args.q)
    async for item in items:
        if isinstance(item, LogLine):
            ctx.out.line(item)
            ctx.out.flush_soon()
        elif isinstance(item, StatusChanged):
            ctx.note(f"joblens: job {status_label(item.status, ctx.out.colour)}")
        elif isinstance(item, Ended):
            ctx.out.flush()
            ctx.note(f"joblens: job {status_label(item.status, ctx.out.colour)}, its log is complete")
            return EXIT_BY_STATUS.get(item.status, EXIT_ERROR)
    return EXIT_ERROR  # follow always ends with Ended or an exception


# ---- search ---------------------------------------------------------------------------------------------------


def when(value: str | None, now: datetime | None = None) -> str | None:
    """An ISO time as given, or ``15m`` (and s, h, d, w) ago as an ISO time."""
    if value is None:
        return None
    relative = RELATIVE_TIME.fullmatch(value.strip())
    if relative is None:
        return value
    seconds = int(relative.group(1)) * UNITS_S[relative.group(2)]
    return iso_time((now or datetime.now(UTC)) - timedelta(seconds=seconds))


async def search_logs(ctx: Context) -> int:
    args = ctx.args
    if args.limit < 1:
        raise UsageError("--limit must be a positive number")
    found = ctx.client.search(
        ctx.space,
        q=args.q,
        level=levels(args),
        name=args.name,
        since=when(args.since),
        until=when(args.until),
        max_lines=args.limit,
        highlight=ctx.out.colour and bool(args.q),
    )
    async for line in found:
        ctx.out.line(line)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m joblens_client``: the terminal commands alone (for a machine with the client only)."""
    parser = argparse.ArgumentParser(prog="joblens", description="The joblens terminal client")
    add_terminal_commands(parser.add_subparsers(title="commands"))
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    result: int = args.run(args)
    return result
