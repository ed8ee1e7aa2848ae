"""The index template is installed at start, and installing it again is harmless."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from dirty_equals import IsInt
from elasticsearch import AsyncElasticsearch

from service.settings import Settings
from service.stores.es_logs import TEMPLATE_FILE_NAME, LogStore
from tests.helpers import AppFactory, Tenant, body, create_job


async def test_template_is_installed_at_start_with_deployment_settings(
    client: TestClient[Any, Any], es: AsyncElasticsearch, settings: Settings
) -> None:
    found = await es.indices.get_index_template(name=settings.index_prefix)
    template = found["index_templates"][0]["index_template"]
    assert template["index_patterns"] == [f"{settings.index_prefix}-*"]
    assert template["template"]["mappings"]["dynamic"] == "strict"
    assert template["template"]["mappings"]["_routing"] == {"required": True}
    assert template["template"]["settings"]["index"]["number_of_replicas"] == "0"
    # a job's lines sit together, in seq order: a page is read from a few adjacent blocks
    assert template["template"]["settings"]["index"]["sort"] == {"field": ["job_id", "seq"], "order": ["asc", "asc"]}


def as_elasticsearch_shows_it(settings: Settings) -> dict[str, Any]:
    """The template file with this deployment's values, as Elasticsearch answers it: index settings nested at
    their dots and written as strings, plus the fields Elasticsearch adds."""
    template = orjson.loads((Path(settings.index_templates_dir) / TEMPLATE_FILE_NAME).read_bytes())
    file_settings = {
        **template["template"]["settings"]["index"],
        "number_of_shards": settings.index_shards,
        "number_of_replicas": settings.index_replicas,
        "refresh_interval": f"{int(settings.index_refresh_interval_s * 1000)}ms",
    }
    index: dict[str, Any] = {}
    for name, value in file_settings.items():
        *parents, leaf = name.split(".")
        node = index
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = [str(item) for item in value] if isinstance(value, list) else str(value)
    return {
        **template,
        "index_patterns": [f"{settings.index_prefix}-*"],
        "template": {**template["template"], "settings": {"index": index}},
        "composed_of": [],
        "created_date_millis": IsInt(),
        "modified_date_millis": IsInt(),
    }


async def templates_named_like(es: AsyncElasticsearch, prefix: str) -> dict[str, Any]:
    """Every index template whose name starts with ``prefix``, by name."""
    found = await es.options(ignore_status=404).indices.get_index_template(name=f"{prefix}*")
    return {entry["name"]: entry["index_template"] for entry in found.get("index_templates", [])}


async def test_reinstalling_and_restarting_is_harmless(
    make_client: AppFactory, es: AsyncElasticsearch, settings: Settings, tenant: Tenant, admin: dict[str, str]
) -> None:
    first = await make_client()
    installed = await templates_named_like(es, settings.index_prefix)
    assert installed == {settings.index_prefix: as_elasticsearch_shows_it(settings)}
    job = await create_job(first, tenant, admin)
    writer = await tenant.key("jobs:log", "jobs:read")
    logs = f"/api/v1/jobs/{job['id']}/logs"
    assert await body(await first.post(logs, json=[{"message": "before"}], headers=writer), 200) == {
        "accepted": 1,
        "firstSeq": 1,
        "lastSeq": 1,
    }

    await LogStore(es, settings).install_template()
    second = await make_client()
    assert await body(await second.get("/readyz"), 200) == {"status": "ready", "redis": "ok", "elasticsearch": "ok"}
    # one template still, the very one: Elasticsearch leaves an identical template untouched (same modified time)
    assert await templates_named_like(es, settings.index_prefix) == installed
    # the index made from it before is still there, written to and read from by the restarted instance
    assert await body(await second.post(logs, json=[{"message": "after"}], headers=writer), 200) == {
        "accepted": 1,
        "firstSeq": 2,
        "lastSeq": 2,
    }
    shown = await body(await second.get(logs, headers=writer), 200)
    assert [(line["seq"], line["message"]) for line in shown["logs"]] == [(1, "before"), (2, "after")]


async def test_indices_from_the_template_reject_unknown_fields(
    client: TestClient[Any, Any], es: AsyncElasticsearch, settings: Settings
) -> None:
    index = f"{settings.index_prefix}-2026.01"
    await es.index(index=index, id="j:1", routing="j", document={"job_id": "j", "seq": 1, "message": "m"})
    rejected = await es.options(ignore_status=400).index(
        index=index, id="j:2", routing="j", document={"job_id": "j", "seq": 2, "surprise": 1}
    )
    assert rejected["error"]["type"] == "strict_dynamic_mapping_exception"
