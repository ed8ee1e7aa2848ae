"""The one table and the JSON file with the same figures, plus what the machine was."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    measure: str
    unit: str
    service: float
    baseline: float | None = None  # None: the row has no baseline
    delta: float | None = None  # service - baseline, when that is the figure that matters
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None  # None: no target
    samples: str = ""


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "n/a"
    if unit in ("lines/s", "req/s"):
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"


def table(rows: list[Row]) -> str:
    header = ("id", "measure", "unit", "service", "baseline", "delta", "ratio", "target", "", "samples")
    lines = [header]
    for row in rows:
        verdict = "" if row.ok is None else ("ok" if row.ok else "GAP")
        ratio = "—" if row.ratio is None else ("n/a" if math.isnan(row.ratio) else f"{row.ratio:.2f}x")
        delta = "—" if row.delta is None else f"{row.delta:+.2f}"
        lines.append(
            (
                row.id,
                row.measure,
                row.unit,
                _num(row.service, row.unit),
                _num(row.baseline, row.unit),
                delta,
                ratio,
                row.target,
                verdict,
                row.samples,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {3, 4, 5, 6}
    out = []
    for number, line in enumerate(lines):
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(line)]
        out.append("  ".join(cells).rstrip())
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _meminfo_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return math.nan


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine(es_version: str, redis_version: str, load_tool: str) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_mib": round(_meminfo_mib()),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "aiohttp": version("aiohttp"),
        "elasticsearch_client": version("elasticsearch"),
        "elasticsearch_server": es_version,
        "redis_py": version("redis"),
        "redis_server": redis_version,
        "orjson": version("orjson"),
        "load_tool": load_tool,
    }


def _clean(value: Any) -> Any:
    """NaN is not JSON: it becomes null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, summary: dict[str, Any], rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = _clean({**summary, "rows": [asdict(row) for row in rows]})
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
