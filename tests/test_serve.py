"""``joblens serve``, run as a user runs it (the installed ``joblens`` script, in a subprocess): a backing store that
does not answer at start-up is one line on stderr naming it — without its credentials — and a non-zero exit."""

from __future__ import annotations

from dirty_equals import IsStr

from devstack.ports import free_port
from service.settings import Settings
from tests.helpers import run_joblens


async def joblens_serve(redis_url: str, elasticsearch_url: str) -> tuple[int, str, str]:
    env = {
        "JOBLENS_REDIS_URL": redis_url,
        "JOBLENS_ELASTICSEARCH_URL": elasticsearch_url,
        "JOBLENS_CONNECT_TIMEOUT_S": "1",
        "JOBLENS_BACKGROUND_TASKS": "false",
    }
    run = await run_joblens("serve", "--port", str(free_port()), env=env)
    return run.code, run.stdout, run.stderr


async def test_serve_with_redis_unreachable_exits_with_one_line(settings: Settings) -> None:
    port = free_port()
    redis_url = f"redis://admin:hunter2-secret@127.0.0.1:{port}/0?password=hunter3-secret"
    code, stdout, stderr = await joblens_serve(redis_url, settings.elasticsearch_urls[0])
    line: object = IsStr(regex=rf"joblens: cannot reach Redis at redis://127\.0\.0\.1:{port}/0 \(.*\b{port}\b.*\)\n")
    assert (code, stdout, stderr) == (1, "", line)
    assert ("Traceback" in stderr, "secret" in stderr, "admin" in stderr) == (False, False, False)


async def test_serve_with_elasticsearch_unreachable_exits_with_one_line(settings: Settings) -> None:
    port = free_port()
    code, stdout, stderr = await joblens_serve(settings.redis_url, f"http://elastic:hunter2-secret@127.0.0.1:{port}")
    shown = rf"http://127\.0\.0\.1:{port}"
    line: object = IsStr(regex=rf"joblens: cannot reach Elasticsearch at {shown} \(.*\b{port}\b.*\)\n")
    assert (code, stdout, stderr) == (1, "", line)
    assert ("Traceback" in stderr, "secret" in stderr, "elastic:" in stderr) == (False, False, False)
