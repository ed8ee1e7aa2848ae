"""``python -m bench.quality.build_corpus``: rebuild ``bench/corpus/lines.jsonl`` from real logs on this machine.

The corpus holds log lines this project did not write: the logs of the Elasticsearch and Redis servers of the
local stacks (this process's state dir and the other ``/var/tmp/joblens-*`` stacks), the JVM's GC logs, Debian's
package logs, npm's and pyenv's logs, and the OpenJDK test logs Debian ships in ``/usr/share/doc``. Each source
(`SOURCES`) says which files it reads and how a raw line becomes ``(level, message)``:

- the timestamp and pid at the head of a line are dropped (they make every line unique and carry nothing to
  search for); a level the log states (``[INFO ]``, ``[warning]``, npm's ``silly``, Redis's ``#``) becomes the
  line's level; logs without one are ``info``, unless the text says ``error:`` / ``warning:`` (`text_level`);
- Elasticsearch's JSON server log is rendered like its plain-text log, ``[logger] [node] message``, but with the
  full logger name (``org.elasticsearch.cluster.routing.allocation.AllocationService``), which the JSON keeps;
- terminal escapes and control characters are removed, a carriage-return progress line keeps what a terminal
  shows last; lines longer than `MAX_MESSAGE_CHARS` (apt's lists of hundreds of packages) are left out.

Within a source, duplicate messages are dropped (the first level wins), and so are messages beyond the
`PER_SHAPE`-th of one shape (the same text but for numbers and ids); a source with more than its quota keeps a
stable sample: the messages whose SHA-256 is smallest, in their original order, except that warn, error and
fatal lines (rare, and what level filters are for) are taken first, up to a third of the quota. The same files
give the same corpus; logs grow, so a rebuild on another day gives another (commit it, with the README this
writes).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import lzma
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.quality.corpus import CORPUS_PATH, LEVELS, CorpusLine, dump_corpus
from devstack.paths import stack_paths

MAX_MESSAGE_CHARS = 4000
# Files read (never written) in /tmp: the JVM flag probes of Elasticsearch's launcher, and pyenv's build logs.
GC_PROBES = "/tmp/final-flags*/gc.log"  # noqa: S108
PYTHON_BUILDS = "/tmp/python-build.*.log"  # noqa: S108
Parsed = Iterator[tuple[str, str]]  # (level, message)
Parser = Callable[[Iterable[str]], Parsed]

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # tab and newline stay
ERROR_TEXT = re.compile(r"(?i)^(?:E: |error\b|failed:)|\berror:|\*\*\* .*\bError \d+")
WARN_TEXT = re.compile(r"(?i)^W: |\bwarning:")


def text_level(message: str) -> str:
    """The level of a line from a log that has none: what its text says, else info."""
    if ERROR_TEXT.search(message):
        return "error"
    if WARN_TEXT.search(message):
        return "warn"
    return "info"


def clean(raw: str) -> str:
    """The text a reader sees: the last carriage-return segment, no escapes or control characters, no trailing
    whitespace."""
    if "\r" in raw:
        segments = [segment for segment in raw.split("\r") if segment.strip()]
        raw = segments[-1] if segments else ""
    return CONTROL.sub(" ", ANSI_ESCAPE.sub("", raw)).rstrip()


# --------------------------------------------------------------------------- parsers: raw lines → (level, message)


def plain_text(raw_lines: Iterable[str]) -> Parsed:
    for raw in raw_lines:
        message = clean(raw)
        if message.strip():
            yield text_level(message), message


ES_LEVELS = {"warning": "warn", "critical": "fatal"}


def es_json(raw_lines: Iterable[str]) -> Parsed:
    """Elasticsearch's ECS JSON server log: ``[logger] [node] message`` (+ the stack trace, if any)."""
    for raw in raw_lines:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        text = f"[{record['log.logger']}] [{record['elasticsearch.node.name']}] {record['message']}"
        if trace := record.get("error.stack_trace"):
            text += "\n" + trace
        level = str(record["log.level"]).lower()
        yield ES_LEVELS.get(level, level), clean(text)


def es_stdout(raw_lines: Iterable[str]) -> Parsed:
    """What the JVM printed besides the log lines (those are in the server log) in devstack's launcher log."""
    yield from plain_text(raw for raw in raw_lines if not raw.startswith("["))


GC_LINE = re.compile(r"^\[[^\]]+\]\[\d+\]\[(?P<level>\w+)\s*\]\[(?P<tags>[^\]]+)\]\s?(?P<text>.*)$")


def jvm_gc(raw_lines: Iterable[str]) -> Parsed:
    """``-Xlog:gc*:…:utctime,level,pid,tags``: ``[time][pid][level][tags] text`` → ``[tags] text``."""
    for raw in raw_lines:
        if match := GC_LINE.match(raw):
            level = match["level"].lower()
            yield ES_LEVELS.get(level, level), clean(f"[{match['tags'].strip()}] {match['text']}")


REDIS_LINE = re.compile(r"^\d+:[XCSM] \d{1,2} \w{3} \d{4} [\d:.]+ (?P<mark>[.*#-]) (?P<text>.*)$")
REDIS_LEVELS = {".": "debug", "-": "debug", "*": "info", "#": "warn"}  # debug, verbose, notice, warning


def redis_log(raw_lines: Iterable[str]) -> Parsed:
    for raw in raw_lines:
        if match := REDIS_LINE.match(raw):
            yield REDIS_LEVELS[match["mark"]], clean(match["text"])


DATED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (?P<text>.+)$")


def dpkg_log(raw_lines: Iterable[str]) -> Parsed:
    for raw in raw_lines:
        if match := DATED.match(raw):
            yield "info", clean(match["text"])


def apt_history(raw_lines: Iterable[str]) -> Parsed:
    """Everything but the Start-Date / End-Date lines (nothing but a time)."""
    for raw in raw_lines:
        message = clean(raw)
        if message and not message.startswith(("Start-Date:", "End-Date:")):
            yield ("error" if message.startswith("Error:") else "info"), message


def apt_term(raw_lines: Iterable[str]) -> Parsed:
    yield from plain_text(raw for raw in raw_lines if not raw.startswith(("Log started:", "Log ended:")))


ALTERNATIVES_LINE = re.compile(r"^(?P<program>\S+) \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}: (?P<text>.*)$")


def alternatives_log(raw_lines: Iterable[str]) -> Parsed:
    """``update-alternatives <date> <time>: text`` → ``update-alternatives: text``."""
    for raw in raw_lines:
        if match := ALTERNATIVES_LINE.match(raw):
            message = clean(f"{match['program']}: {match['text']}")
            yield text_level(message), message


NPM_LINE = re.compile(r"^\d+ (?P<level>[a-z]+) ?(?P<text>.*)$")
NPM_LEVELS = {"silly": "trace", "verbose": "debug", "timing": "debug", "http": "info", "notice": "info"}


def npm_debug(raw_lines: Iterable[str]) -> Parsed:
    """``<n> <level> text`` (npm's levels: silly, verbose, timing, http, info, notice, warn, error)."""
    for raw in raw_lines:
        match = NPM_LINE.match(raw)
        if match and match["text"].strip():
            level = NPM_LEVELS.get(match["level"], match["level"])
            yield (level if level in LEVELS else "info"), clean(match["text"])


# --------------------------------------------------------------------------- sources


def _stack_dirs() -> list[Path]:
    """This process's devstack state dir first, then the other local stacks beside it (older or parallel runs)."""
    own = stack_paths().root
    others = sorted(Path(path) for path in glob.glob(str(own.parent / "joblens-*")) if Path(path) != own)
    return [own, *others]


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    patterns: tuple[str, ...]  # globs
    parse: Parser
    quota: int  # most lines kept (a stable sample beyond it)
    about: str  # where the files come from, for the README


def sources() -> tuple[Source, ...]:
    stacks = _stack_dirs()

    def in_stacks(relative: str) -> tuple[str, ...]:
        return tuple(str(stack / relative) for stack in stacks)

    home = Path.home()
    return (
        Source("elasticsearch/server", in_stacks("es/logs/*_server.json*"), es_json, 600,
               "Elasticsearch's JSON server log of each local stack"),
        Source("elasticsearch/stdout", in_stacks("es/launcher.log"), es_stdout, 50,
               "the JVM's own warnings, as captured by devstack's launcher"),
        Source("jvm/gc", (*in_stacks("es/logs/gc.log*"), GC_PROBES), jvm_gc, 700,
               "the Elasticsearch JVM's GC log, and those of the launcher's final-flags probes"),
        Source("redis", (*in_stacks("redis/redis.log"), "/var/log/redis/*.log"), redis_log, 100,
               "redis-server's log of each local stack"),
        Source("dpkg", ("/var/log/dpkg.log*",), dpkg_log, 1100, "dpkg's log"),
        Source("apt/history", ("/var/log/apt/history.log*",), apt_history, 200, "apt's history"),
        Source("apt/term", ("/var/log/apt/term.log*",), apt_term, 700, "what dpkg printed during apt runs"),
        Source("alternatives", ("/var/log/alternatives.log*",), alternatives_log, 200, "update-alternatives' log"),
        Source("npm", (str(home / ".npm/_logs/*.log"),), npm_debug, 600, "npm's debug logs"),
        Source("pyenv/python-build", (PYTHON_BUILDS,), plain_text, 1100,
               "pyenv's CPython build logs (configure, gcc, install)"),
        Source("openjdk/jtreg", ("/usr/share/doc/openjdk-*/test-*/*.log*",), plain_text, 800,
               "the OpenJDK test-suite logs Debian ships with the JDK packages"),
        Source("fontconfig", ("/var/log/fontconfig.log",), plain_text, 50, "fc-cache's log"),
    )  # fmt: skip


def read_lines(path: Path) -> list[str]:
    """The file's lines (gzip and xz files decompressed; bytes that are not UTF-8 replaced)."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    elif path.suffix == ".xz":
        raw = lzma.decompress(raw)
    return raw.decode("utf-8", errors="replace").split("\n")


def matched_files(source: Source) -> list[Path]:
    """Each file once (copies shipped by several packages are read once: their lines are deduplicated anyway)."""
    found = {Path(path).resolve() for pattern in source.patterns for path in glob.glob(pattern)}
    return sorted(path for path in found if path.is_file() and path.stat().st_size > 0)


RARE_LEVELS = frozenset({"warn", "error", "fatal"})
PER_SHAPE = 8  # a log repeats a few shapes (a test run's "adding index template [jlt-3f2a…]") many times
SHAPE_BLANKS = re.compile(
    r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[a-z])(?=[\w-]*[A-Z])[\w-]{20,24}(?![\w-])"  # base64url ids (Elasticsearch's)
    r"|\b(?=[0-9a-fA-F_-]*\d)[0-9a-fA-F_-]{6,}\b"  # hex ids
    r"|\d+"
)


def _digest(message: str) -> bytes:
    return hashlib.sha256(message.encode()).digest()


def shape(message: str) -> str:
    """The message with its numbers and ids blanked: lines of one shape differ only in those."""
    return SHAPE_BLANKS.sub("#", message)


def stable_sample(levels: dict[str, str], quota: int) -> set[str]:
    """``quota`` of the messages (message → level), each shape at most `PER_SHAPE` times: rare-level ones first
    (at most a third of the quota), then the rest, each by smallest SHA-256, so the same set whatever order they
    came in."""
    per_shape: dict[str, int] = {}
    varied = []
    for message in sorted(levels, key=_digest):
        key = shape(message)
        per_shape[key] = per_shape.get(key, 0) + 1
        if per_shape[key] <= PER_SHAPE:
            varied.append(message)
    rare = [message for message in varied if levels[message] in RARE_LEVELS]
    kept = set(rare[: quota // 3])
    rest = [message for message in varied if message not in kept]
    return kept | set(rest[: quota - len(kept)])


@dataclass(frozen=True, slots=True)
class SourceLines:
    source: Source
    files: list[Path]
    parsed: int
    lines: list[CorpusLine]


def collect(source: Source) -> SourceLines:
    files = matched_files(source)
    first_level: dict[str, str] = {}  # insertion-ordered: the first occurrence's place and level
    parsed = 0
    for path in files:
        try:
            raw_lines = read_lines(path)
        except PermissionError:
            continue
        for level, message in source.parse(raw_lines):
            parsed += 1
            if message.strip() and len(message) <= MAX_MESSAGE_CHARS:
                first_level.setdefault(message, level)
    kept = stable_sample(first_level, source.quota)
    lines = [CorpusLine(source.name, message, level) for message, level in first_level.items() if message in kept]
    return SourceLines(source, files, parsed, lines)


def build() -> list[SourceLines]:
    """Every source's lines; a message found in two sources stays in the first only."""
    seen: set[str] = set()
    collected = []
    for source in sources():
        part = collect(source)
        unique = [line for line in part.lines if line.message not in seen]
        seen.update(line.message for line in unique)
        collected.append(SourceLines(part.source, part.files, part.parsed, unique))
    return collected


def readme(collected: list[SourceLines], total_bytes: int) -> str:
    """``bench/corpus/README.md``: what each part of the corpus is and where it came from."""
    rows = [
        "| source | lines | read from | files | lines parsed |",
        "|---|---:|---|---:|---:|",
    ]
    for part in collected:
        patterns = ", ".join(f"`{pattern}`" for pattern in part.source.patterns)
        rows.append(
            f"| `{part.source.name}` | {len(part.lines):,} | {part.source.about}: {patterns} | {len(part.files)} "
            f"| {part.parsed:,} |"
        )
    total = sum(len(part.lines) for part in collected)
    levels = {level: sum(line.level == level for part in collected for line in part.lines) for level in LEVELS}
    level_text = ", ".join(f"{level} {count:,}" for level, count in levels.items())
    return "\n".join(
        [
            "# Search-quality corpus",
            "",
            f"`lines.jsonl`: {total:,} real log lines ({total_bytes / 2**20:.2f} MiB), one JSON object a line",
            '(`{"source", "message", "level"}`), read by `python -m bench.quality`. Levels: ' + level_text + ".",
            "",
            "Written by `python -m bench.quality.build_corpus` (this file too); how a raw line became a message is",
            "in that module's docstring. None of it was written by joblens.",
            "",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality.build_corpus", description=__doc__)
    parser.add_argument("--output", type=Path, default=CORPUS_PATH)
    args = parser.parse_args()
    collected = build()
    size = dump_corpus((line for part in collected for line in part.lines), args.output)
    args.output.with_name("README.md").write_text(readme(collected, size))
    for part in collected:
        print(f"{part.source.name:22} {len(part.files):3} files {part.parsed:7,} parsed {len(part.lines):6,} kept")
    print(f"{sum(len(part.lines) for part in collected):,} lines, {size:,} bytes → {args.output}")


if __name__ == "__main__":
    main()
