"""A minimal Elasticsearch HTTP client for setup work (bulk loads, counts, settings): raw aiohttp + orjson."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

JSON_HEADERS = {"Content-Type": "application/json"}
NDJSON_HEADERS = {"Content-Type": "application/x-ndjson"}


class EsError(RuntimeError):
    """Elasticsearch answered with an unexpected status."""


class Es:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Es:
        timeout = aiohttp.ClientTimeout(total=300)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=16))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        ndjson: bool = False,
        params: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        assert self._session is not None, "use `async with Es(...)`"
        headers = NDJSON_HEADERS if ndjson else JSON_HEADERS
        async with self._session.request(
            method, self.base_url + path, data=body, headers=headers, params=params
        ) as response:
            return response.status, await response.read()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        allow: tuple[int, ...] = (200,),
    ) -> Any:
        data = None if body is None else orjson.dumps(body)
        status, raw = await self.raw(method, path, data, params=params)
        if status not in allow:
            raise EsError(f"{method} {path} answered {status}: {raw[:300]!r}")
        return orjson.loads(raw) if raw else None

    async def count(self, index: str, query: dict[str, Any]) -> int:
        answer = await self.call(
            "POST",
            f"/{index}/_count",
            {"query": query},
            params={"ignore_unavailable": "true", "allow_no_indices": "true"},
        )
        return int(answer["count"])

    async def index_names(self, pattern: str) -> list[str]:
        answer = await self.call(
            "GET", f"/_cat/indices/{pattern}", params={"format": "json", "h": "index"}, allow=(200, 404)
        )
        return sorted(row["index"] for row in answer or [])

    async def delete_index(self, index: str) -> None:
        await self.call("DELETE", f"/{index}", allow=(200, 404))

    async def version(self) -> str:
        answer = await self.call("GET", "/_nodes/_local", params={"filter_path": "nodes.*.version"})
        return str(next(iter(answer["nodes"].values()))["version"])
