"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from aiohttp import web
from elasticsearch import AsyncElasticsearch
from redis.asyncio import Redis

from service.observability import AccessLog, Metrics
from service.services.auth import Authenticator
from service.services.lifecycle import LifecycleService
from service.services.live import LiveHub
from service.services.logs import LogService
from service.settings import Settings
from service.stores.redis_api_keys import Principal
from service.stores.redis_cache import ReadCache
from service.stores.redis_jobs import JobStore

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
READ_CACHE = web.AppKey("read_cache", ReadCache)
ELASTICSEARCH = web.AppKey("elasticsearch", AsyncElasticsearch)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
JOBS = web.AppKey("jobs", JobStore)
LOGS = web.AppKey("logs", LogService)
LIFECYCLE = web.AppKey("lifecycle", LifecycleService)
METRICS = web.AppKey("metrics", Metrics)
ACCESS_LOG = web.AppKey("access_log", AccessLog)
LIVE_HUB = web.AppKey("live_hub", LiveHub)

PRINCIPAL = web.RequestKey("principal", Principal)
REQUEST_ID = web.RequestKey("request_id", str)
