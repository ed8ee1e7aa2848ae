"""An incremental Server-Sent Events parser (the text/event-stream format), fed with bytes as they arrive.

It reads whole chunks rather than lines from the connection because one ``logs`` event's data line can be far
longer than a line reader's limit (a page of up to 500 lines of 32 KiB each).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PENDING_BYTES = 64 * 1024 * 1024  # an event that never ends would otherwise grow without limit


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" when the event names no type
    data: str
    id: str | None  # this event's id field, if it had one


class SseParser:
    """``feed(chunk)`` returns the events completed by it. ``retry_ms`` holds the last ``retry:`` hint."""

    def __init__(self) -> None:
        self.retry_ms: int | None = None
        self._pending = b""
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        if len(self._pending) > MAX_PENDING_BYTES:
            raise ValueError(f"an event stream line is longer than {MAX_PENDING_BYTES} bytes")
        events: list[SseEvent] = []
        for raw in lines:
            event = self._line(raw.removesuffix(b"\r").decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        event = SseEvent(self._event or "message", "\n".join(self._data), self._id) if self._data else None
        self._event, self._data, self._id = "", [], None
        return event
