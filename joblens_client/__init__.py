"""joblens_client: a Python client for joblens (async and sync), a logging handler that ships a worker's log
records to its job's log, and the terminal client (``joblens jobs|progress|logs|search``).

    from joblens_client import Joblens
    with Joblens("http://127.0.0.1:8080", api_key) as jl:
        for line in jl.lines(job_id):
            print(line.seq, line.message)

See docs/client.md.
"""

from joblens_client.backoff import Backoff
from joblens_client.client import AsyncJoblens
from joblens_client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    JoblensError,
    NotFound,
    RateLimited,
    SearchTimeout,
    ServerError,
    TooLarge,
    Unauthorized,
    Unavailable,
    Unreachable,
)
from joblens_client.handler import HandlerStats, JoblensLogHandler
from joblens_client.records import (
    Appended,
    Cursor,
    Ended,
    Event,
    FollowItem,
    Job,
    LogLine,
    LogPage,
    NewLogLine,
    Progress,
    ProgressChanged,
    SearchPage,
    StageProgress,
    StatusChanged,
)
from joblens_client.sync import Joblens

__all__ = [
    "Appended",
    "AsyncJoblens",
    "Backoff",
    "BadRequest",
    "Conflict",
    "Cursor",
    "Ended",
    "Event",
    "FollowItem",
    "Forbidden",
    "HandlerStats",
    "Job",
    "Joblens",
    "JoblensError",
    "JoblensLogHandler",
    "LogLine",
    "LogPage",
    "NewLogLine",
    "NotFound",
    "Progress",
    "ProgressChanged",
    "RateLimited",
    "SearchPage",
    "SearchTimeout",
    "ServerError",
    "StageProgress",
    "StatusChanged",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
]
