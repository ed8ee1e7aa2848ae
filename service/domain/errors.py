"""Domain errors: each carries the HTTP status the error middleware answers with."""

from __future__ import annotations


class DomainError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParam(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class JobNotFound(DomainError):
    status = 404

    def __init__(self) -> None:
        super().__init__("Job not found")


class RequestTimeout(DomainError):
    status = 408


class WrongState(DomainError):
    status = 409


class TooLarge(DomainError):
    status = 413


class UrlTooLong(DomainError):
    status = 414


class HeaderTooLarge(DomainError):
    status = 431


class SearchTooLong(DomainError):
    """A search across a space ran past its time (`JOBLENS_SPACE_SEARCH_TIMEOUT_S`): cut, with what to do."""

    status = 504

    def __init__(self) -> None:
        super().__init__("The search ran too long and was stopped; narrow it with since/until, name, level or q")


class ClientClosed(DomainError):
    """The client went away before its request was read: nobody gets the answer, but logs and metrics show
    499 (nginx's "client closed request"), not an error of ours."""

    status = 499


class RateLimited(DomainError):
    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("Rate limit exceeded")
        self.retry_after_s = retry_after_s


class TooManyStreams(DomainError):
    """The API key holds as many open log streams as an instance allows it."""

    status = 429


class Unavailable(DomainError):
    status = 503
