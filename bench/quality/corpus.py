"""The committed corpus of real log lines (``bench/corpus/lines.jsonl``): its line type, reading and writing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

CORPUS_PATH = Path(__file__).resolve().parent.parent / "corpus" / "lines.jsonl"
LEVELS = ("trace", "debug", "info", "warn", "error", "fatal")  # the levels Append Logs accepts


@dataclass(frozen=True, slots=True)
class CorpusLine:
    source: str  # where the line came from (see build_corpus.SOURCES)
    message: str
    level: str  # one of LEVELS


def load_corpus(path: Path = CORPUS_PATH) -> list[CorpusLine]:
    """Every line of the corpus file, in file order (the order they are appended in)."""
    lines = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        record = orjson.loads(raw)
        line = CorpusLine(record["source"], record["message"], record["level"])
        if line.level not in LEVELS or not line.message:
            raise ValueError(f"{path}:{number}: a line needs a message and a level in {LEVELS}")
        lines.append(line)
    return lines


def dump_corpus(lines: Iterable[CorpusLine], path: Path = CORPUS_PATH) -> int:
    """Write ``lines`` as JSON lines (keys in the order source, message, level); returns the bytes written."""
    body = b"".join(
        orjson.dumps({"source": line.source, "message": line.message, "level": line.level}) + b"\n" for line in lines
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return len(body)
