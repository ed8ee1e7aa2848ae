"""Bringing log indices made from an older template up to date (``joblens indices upgrade``).

Lines written before the search fields existed lack ``words``, ``joins`` and ``job_name``: searches still find
them through their analysed ``message`` (see `es_logs.text_query`), but only as whole standard tokens, and a
search across a space shows them with a job name looked up in Redis. An upgrade rewrites each such line in place,
month by month, with the fields the service computes at ingest — conditionally on the version it read, so a line
deleted meanwhile (the janitor removing an abandoned range) is never brought back. Safe to run while the service
serves, and to repeat: a line upgraded once is not read again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.domain.search import search_fields
from service.stores.es_logs import LogStore, StoredLine
from service.stores.redis_jobs import JobStore

UPGRADE_BATCH = 1000


@dataclass(slots=True)
class IndexUpgrade:
    index: str
    rewritten: int = 0
    skipped: int = 0  # changed or deleted since read: left as it is now


class IndexUpgrader:
    def __init__(self, lines: LogStore, jobs: JobStore) -> None:
        self._lines = lines
        self._jobs = jobs

    async def upgrade_all(self, report: Callable[[IndexUpgrade], None] | None = None) -> list[IndexUpgrade]:
        """Upgrade every index of the deployment, oldest month first; ``report`` hears of each when done."""
        done = []
        for index in await self._lines.indices():
            upgrade = await self.upgrade(index)
            done.append(upgrade)
            if report is not None:
                report(upgrade)
        return done

    async def upgrade(self, index: str) -> IndexUpgrade:
        upgrade = IndexUpgrade(index)
        while lines := await self._lines.lines_to_upgrade(index, UPGRADE_BATCH):
            rewritten, skipped = await self._lines.rewrite_lines(index, await self._with_fields(lines))
            upgrade.rewritten += rewritten
            upgrade.skipped += skipped  # deleted meanwhile: not read again; changed: read afresh next pass
        return upgrade

    async def _with_fields(self, lines: list[StoredLine]) -> list[StoredLine]:
        names: dict[tuple[str, str], str] = {}
        by_space: dict[str, set[str]] = {}
        for line in lines:
            by_space.setdefault(line.source["space_id"], set()).add(line.source["job_id"])
        for space_id, job_ids in by_space.items():
            for job_id, name in (await self._jobs.names(space_id, job_ids)).items():
                names[space_id, job_id] = name
        upgraded = []
        for line in lines:
            source = dict(line.source)
            fields = search_fields(source["message"])
            source |= {"words": fields.words, "joins": fields.joins}
            source["job_name"] = names.get((source["space_id"], source["job_id"]), "")  # a job gone has no name
            upgraded.append(StoredLine(line.doc_id, line.routing, source, line.seq_no, line.primary_term))
        return upgraded
