"""The index template is installed at start, and installing it again is harmless."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from elasticsearch import AsyncElasticsearch

from service.settings import Settings
from service.stores.es_logs import LogStore
from tests.conftest import AppFactory


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


async def test_reinstalling_and_restarting_is_harmless(
    make_client: AppFactory, es: AsyncElasticsearch, settings: Settings
) -> None:
    await make_client()
    await LogStore(es, settings).install_template()
    second = await make_client()
    assert (await second.get("/readyz")).status == 200
    found = await es.indices.get_index_template(name=settings.index_prefix)
    assert len(found["index_templates"]) == 1


async def test_indices_from_the_template_reject_unknown_fields(
    client: TestClient[Any, Any], es: AsyncElasticsearch, settings: Settings
) -> None:
    index = f"{settings.index_prefix}-2026.01"
    await es.index(index=index, id="j:1", routing="j", document={"job_id": "j", "seq": 1, "message": "m"})
    rejected = await es.options(ignore_status=400).index(
        index=index, id="j:2", routing="j", document={"job_id": "j", "seq": 2, "surprise": 1}
    )
    assert rejected["error"]["type"] == "strict_dynamic_mapping_exception"
