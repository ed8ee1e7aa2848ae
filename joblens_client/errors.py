"""Typed errors: one class per kind of answer, each carrying the API's ``{"error": ...}`` message and status.

Callers catch by class (``except NotFound``), never by message text.
"""

from __future__ import annotations


class JoblensError(Exception):
    """Any failure of a joblens call. ``status`` is the HTTP status (None when no answer arrived)."""

    def __init__(self, message: str, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.idempotency_key: str | None = None  # set on a failed log append: retry with it to never duplicate

    def __str__(self) -> str:
        return self.message if self.status is None else f"{self.message} (HTTP {self.status})"


class BadRequest(JoblensError):
    """400: a parameter or body the API refused; the message names it."""


class Unauthorized(JoblensError):
    """401: a missing, unknown or revoked API key."""


class Forbidden(JoblensError):
    """403: the key lacks a scope, or the path names another space."""


class NotFound(JoblensError):
    """404: an unknown job (or one of another space)."""


class Conflict(JoblensError):
    """409: the job is in the wrong state for the call, or an ``Idempotency-Key`` is in use."""


class TooLarge(JoblensError):
    """413: a body, batch or payload over the server's limits."""


class RateLimited(JoblensError):
    """429: the key's rate limit (or its number of open log streams) is reached."""

    def __init__(
        self, message: str, status: int | None = 429, request_id: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status, request_id)
        self.retry_after_s = retry_after_s


class Unavailable(JoblensError):
    """503, or no answer at all (connection refused or dropped, timeout): worth retrying later."""


class Unreachable(Unavailable):
    """No connection could be made (refused, no route, DNS): nothing was sent."""


class SearchTimeout(JoblensError):
    """504: a search ran longer than the server allows; narrow it (time range, level, name)."""


class ServerError(JoblensError):
    """Any other answer (500, an unexpected status or body)."""


BY_STATUS: dict[int, type[JoblensError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    429: RateLimited,
    503: Unavailable,
    504: SearchTimeout,
}


def error_for(status: int, message: str, request_id: str | None, retry_after_s: float | None) -> JoblensError:
    """The exception for an error answer of ``status``."""
    if status == 429:
        return RateLimited(message, status, request_id, retry_after_s)
    kind = BY_STATUS.get(status, BadRequest if 400 <= status < 500 else ServerError)
    return kind(message, status, request_id)
