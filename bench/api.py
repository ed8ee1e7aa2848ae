"""A small client of the joblens HTTP API for setting up benchmarks (never used for timing)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson


class ApiError(RuntimeError):
    """The service answered with an unexpected status."""


class Api:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self.session = session
        self.base_url = base_url
        self.api_key = api_key

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}

    async def raw(self, method: str, path: str, body: Any = None, expect: int = 200) -> bytes:
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        headers = {**self.headers, "Content-Type": "application/json"} if data is not None else self.headers
        async with self.session.request(method, self.base_url + path, data=data, headers=headers) as response:
            answer = await response.read()
            if response.status != expect:
                raise ApiError(f"{method} {path} answered {response.status}: {answer[:300]!r}")
            return answer

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        return orjson.loads(await self.raw(method, path, body, expect))

    async def create_jobs(self, space_id: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        created: list[dict[str, Any]] = await self.call("POST", f"/api/v1/spaces/{space_id}/jobs", jobs, 201)
        return created
