"""SIGTERM: stop accepting, finish the requests in flight, close the clients, exit 0."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import orjson
from elasticsearch import AsyncElasticsearch

from service.settings import Settings
from tests.helpers import Tenant
from tests.servers import Served, held_requests, joblens_serve

LINES = [{"message": f"line {i}"} for i in range(50)]
# Once the last request is answered: far below the grace period (SHUTDOWN_GRACE_S, 30 s), which must not be waited
# out. That it was not is read from the service's log (`grace_not_waited_out`); this is only a bound on the wait.
EXIT_PROMPTLY_S = 20.0


class Upload:
    """A raw POST whose body is sent in parts: the server is running it once it has answered ``100 Continue``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> None:
        self.reader, self.writer, self.body = reader, writer, body

    @classmethod
    async def start(cls, served: Served, path: str, payload: Any, first_bytes: int) -> Upload:
        body = orjson.dumps(payload)
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        head = [
            f"POST {path} HTTP/1.1",
            f"Host: 127.0.0.1:{served.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Expect: 100-continue",  # answered by the server's request handler: the request is then in flight
            *(f"{name}: {value}" for name, value in served.headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body[:first_bytes])
        await writer.drain()
        return cls(reader, writer, body[first_bytes:])

    async def finish(self) -> tuple[int, dict[str, str], Any]:
        """Send the rest of the body; the status, headers and JSON body of the answer, read to the server's close."""
        self.writer.write(self.body)
        await self.writer.drain()
        try:
            answer = await asyncio.wait_for(self.reader.read(), 5)
        finally:
            self.writer.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        return status, headers, orjson.loads(payload)


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the headers (names in lower case) of a response head."""
    status_line, *header_lines = head.decode().strip().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split(" ", 2)[1]), headers


async def refused_within(port: int, timeout_s: float) -> None:
    """Wait until a new connection to ``port`` is refused (or reset): the listening socket is closed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except (ConnectionRefusedError, ConnectionResetError):
            return
        writer.close()
        assert time.monotonic() < deadline, f"port {port} still accepts connections after {timeout_s}s"
        await asyncio.sleep(0.05)


async def test_sigterm_lets_an_in_flight_append_finish(
    settings: Settings, es: AsyncElasticsearch, tenant: Tenant
) -> None:
    async with (
        held_requests(settings.elasticsearch_urls[0], "/_bulk") as proxy,
        joblens_serve(settings, tenant, proxy.url) as served,
    ):
        whole = len(orjson.dumps(LINES))
        upload = await Upload.start(served, f"/api/v1/jobs/{served.job_id}/logs", LINES, first_bytes=whole)
        await asyncio.wait_for(proxy.held.wait(), 10)  # the append is under way: its bulk is held
        served.process.send_signal(signal.SIGTERM)
        await refused_within(served.port, 5)  # the signal has been handled: shutdown is under way
        proxy.release.set()
        status, _, payload = await upload.finish()
        assert (status, payload) == (200, {"accepted": 50, "firstSeq": 1, "lastSeq": 50})
        await served.exit_code(EXIT_PROMPTLY_S)
        await served.grace_not_waited_out()


async def test_sigterm_lets_a_body_still_uploading_finish(
    settings: Settings, es: AsyncElasticsearch, tenant: Tenant
) -> None:
    async with joblens_serve(settings, tenant) as served:
        upload = await Upload.start(served, f"/api/v1/jobs/{served.job_id}/logs", LINES, first_bytes=10)
        served.process.send_signal(signal.SIGTERM)
        await refused_within(served.port, 5)  # the signal has been handled: shutdown is under way
        status, headers, payload = await upload.finish()
        assert (status, payload) == (200, {"accepted": 50, "firstSeq": 1, "lastSeq": 50})
        assert headers["connection"] == "close"
        await served.exit_code(EXIT_PROMPTLY_S)
        await served.grace_not_waited_out()


async def test_sigterm_refuses_new_connections_and_closes_idle_ones_while_a_request_runs(
    settings: Settings, es: AsyncElasticsearch, tenant: Tenant
) -> None:
    async with joblens_serve(settings, tenant) as served:
        # A keep-alive connection that has had its answer and now waits for its next request.
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", served.port)
        idle_writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        status, headers = parse_head(await asyncio.wait_for(idle_reader.readuntil(b"\r\n\r\n"), 5))
        assert (status, headers.get("connection")) == (200, None)  # HTTP/1.1: the connection stays open
        await asyncio.wait_for(idle_reader.readexactly(int(headers["content-length"])), 5)
        upload = await Upload.start(served, f"/api/v1/jobs/{served.job_id}/logs", LINES, first_bytes=10)

        served.process.send_signal(signal.SIGTERM)
        await refused_within(served.port, 5)
        assert await asyncio.wait_for(idle_reader.read(), 5) == b"", "the idle connection was not closed"
        idle_writer.close()
        assert served.process.returncode is None, "the service exited with a request in flight"

        status, _, payload = await upload.finish()
        assert (status, payload) == (200, {"accepted": 50, "firstSeq": 1, "lastSeq": 50})
        await served.exit_code(EXIT_PROMPTLY_S)
        await served.grace_not_waited_out()
