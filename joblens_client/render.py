"""How the terminal client shows things: log lines (time, level, message), colour by level on a terminal only,
highlights of search matches, progress bars. Pure functions of their input.

A log message is text from a program, so on a terminal it may carry escape sequences: its colours (SGR) are kept
when colour is on and stripped otherwise; every other escape sequence and control character (cursor moves,
window titles, a bare carriage return) is shown escaped (``\\x1b``), so no log line can rewrite the screen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from joblens_client.records import Job, LogLine, Progress

RESET = "\x1b[0m"
LEVEL_COLOURS = {
    "trace": "\x1b[2m",  # dim
    "debug": "\x1b[36m",  # cyan
    "info": "\x1b[32m",  # green
    "warn": "\x1b[33m",  # yellow
    "error": "\x1b[31m",  # red
    "fatal": "\x1b[1;97;41m",  # bold white on red
}
HIGHLIGHT = "\x1b[1;7m"  # bold, reverse video
DIM = "\x1b[2m"
STATUS_COLOURS = {"completed": "\x1b[32m", "dead": "\x1b[31m", "killed": "\x1b[35m", "running": "\x1b[36m"}

# An escape sequence: CSI (ESC [ … final byte), OSC (ESC ] … BEL or ESC \), or ESC and one character.
ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.?)", re.DOTALL)
SGR = re.compile(r"\x1b\[[0-9;:]*m")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 (but tab and newline), DEL, C1


def colour_wanted(is_tty: bool, env: Mapping[str, str] | None = None) -> bool:
    """Colour on a terminal only, and never with ``NO_COLOR`` set (https://no-color.org) or ``TERM=dumb``."""
    env = os.environ if env is None else env
    return is_tty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"


def _escaped(match: re.Match[str]) -> str:
    return "".join(f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F else ch for ch in match.group())


def clean(text: str, colour: bool) -> str:
    """``text`` safe to write to a terminal (see the module docstring)."""
    text = text.replace("\r\n", "\n")
    parts: list[str] = []
    position = 0
    for match in ESCAPE.finditer(text):
        parts.append(CONTROL.sub(_escaped, text[position : match.start()]))
        if SGR.fullmatch(match.group()):
            parts.append(match.group() if colour else "")
        else:
            parts.append(_escaped(match))
        position = match.end()
    parts.append(CONTROL.sub(_escaped, text[position:]))
    return "".join(parts)


def highlighted(message: str, highlights: tuple[tuple[int, int], ...] | None, colour: bool) -> str:
    """The message, cleaned, with its matches (code-point offsets, end exclusive) in reverse video."""
    if not colour or not highlights:
        return clean(message, colour)
    parts: list[str] = []
    position = 0
    for start, end in sorted(highlights):
        start, end = max(start, position), min(end, len(message))
        if start >= end:
            continue
        parts.append(clean(message[position:start], colour))
        parts.append(HIGHLIGHT + clean(message[start:end], colour=False) + RESET)
        position = end
    parts.append(clean(message[position:], colour))
    return "".join(parts)


def indent_continuations(message: str) -> str:
    """Lines after the first of a multi-line message (a traceback) are indented, so each log line is seen to
    start at its time."""
    return message.replace("\n", "\n    ")


def level_label(level: str, colour: bool) -> str:
    label = f"{level.upper():<5}"
    return f"{LEVEL_COLOURS.get(level, '')}{label}{RESET}" if colour else label


def log_line(line: LogLine, colour: bool) -> str:
    """``<loggedAt> <LEVEL> <message>``; a space search's line also names its job and seq."""
    message = indent_continuations(highlighted(line.message, line.highlights, colour))
    time = f"{DIM}{line.logged_at}{RESET}" if colour else line.logged_at
    where = ""
    if line.job_id is not None:
        where = f"{line.job_name or ''} {line.job_id}:{line.seq} "
        where = f"{DIM}{where}{RESET}" if colour else where
    suffix = RESET if colour and "\x1b" in message else ""  # a message's own colour ends with it
    return f"{time} {level_label(line.level, colour)} {where}{message}{suffix}"


def status_label(status: str, colour: bool, width: int = 0) -> str:
    """The status, padded to ``width`` columns (the padding outside the colour, so columns line up)."""
    padding = " " * max(0, width - len(status))
    if colour and status in STATUS_COLOURS:
        return f"{STATUS_COLOURS[status]}{status}{RESET}{padding}"
    return status + padding


def jobs_table(jobs: list[Job], colour: bool) -> list[str]:
    rows = [("ID", "STATUS", "ATTEMPT", "CREATED", "NAME")]
    rows += [(j.id, j.status, f"{j.attempt_number}/{j.max_retries}", j.created_at, j.name) for j in jobs]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for number, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        if number and colour:
            cells[1] = status_label(row[1], colour, widths[1])
        lines.append("  ".join([*cells, clean(row[4], colour=False)]))
    return lines


def job_details(job: Job, colour: bool, compact_json: bytes) -> list[str]:
    """Get Job as ``field  value`` lines, then its events."""
    fields = [
        ("id", job.id),
        ("name", clean(job.name, colour=False)),
        ("status", status_label(job.status, colour)),
        ("attempt", f"{job.attempt_number} (max retries {job.max_retries})"),
        ("timeout", f"{job.timeout_seconds}s"),
        ("created", job.created_at),
        ("delivered", job.delivered_at or "-"),
        ("started", job.started_at or "-"),
        ("completed", job.completed_at or "-"),
        ("updated", job.updated_at),
        ("payload", compact_json.decode()),
    ]
    lines = [f"{name:<10} {value}" for name, value in fields]
    if job.events:
        lines.append("events")
        for event in job.events:
            lines.append(f"  {event.created_at}  {event.type}")
    return lines


def bar(percent: float, width: int, unicode: bool) -> str:
    filled = round(width * max(0.0, min(percent, 100.0)) / 100)
    full, empty = ("█", "░") if unicode else ("#", ".")
    return full * filled + empty * (width - filled)


def percent_text(percent: float) -> str:
    return f"{percent:5.1f}%" if percent % 1 else f"{int(percent):4d}%"


def progress_lines(progress: Progress, status: str, columns: int, colour: bool, unicode: bool) -> list[str]:
    """A job's progress as bars: its own, then one per stage (its subProgress); at most ``columns`` wide."""
    width = max(10, min(40, columns - 40))
    lines = []
    percent = progress.percent or 0.0
    message = clean(progress.message or "(no progress reported yet)", colour=False)
    head = f"{status_label(status, colour, 10)} [{bar(percent, width, unicode)}] {percent_text(percent)}  "
    lines.append(head + message[: max(0, columns - len(status) - width - 12)])
    names = max((len(name) for name in progress.stages), default=0)
    for name, stage in progress.stages.items():
        label = clean(name, colour=False).ljust(names)
        text = clean(stage.message or "", colour=False)
        row = f"  {label} [{bar(stage.percent, width, unicode)}] {percent_text(stage.percent)}  {text}"
        lines.append(row[: max(columns - 1, 20)])
    return lines


def progress_text(progress: Progress) -> list[str]:
    """A job's progress as plain text: ``42% message``, then ``  stage: 40% message`` lines."""
    if not progress.reported:
        return ["no progress reported yet"]
    lines = [f"{percent_text(progress.percent or 0).strip()} {clean(progress.message or '', colour=False)}"]
    for name, stage in progress.stages.items():
        text = clean(stage.message or "", colour=False)
        lines.append(f"  {clean(name, colour=False)}: {percent_text(stage.percent).strip()} {text}".rstrip())
    return lines
