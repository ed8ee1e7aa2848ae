#!/usr/bin/env bash
# Full check suite (lint, format, types, tests) against the local Redis + Elasticsearch stack, then the cluster
# pass: the same test files (CLUSTER_TESTS) against the cluster stack (Redis Cluster, 3 Elasticsearch nodes), with
# the cluster's own tests (tests/test_cluster_*.py, fault tests included).
# Starts each stack if it is not running and stops it again on exit only if this run started it.
# Usage: scripts/test.sh [extra pytest args]   (normally via `make test`; the args go to the first pass)
#        JOBLENS_TEST_PASSES=single|cluster|both (default both) picks the passes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${VENV:-.venv}/bin"
PASSES="${JOBLENS_TEST_PASSES:-both}"
started=0
cluster_started=0
# What runs on the cluster too: the Query Jobs API, logs (exactness under concurrency, live streams), the
# lifecycle and the isolation matrices; and the cluster's own tests.
CLUSTER_TESTS=(
    tests/test_jobs_*.py tests/test_logs_*.py tests/test_lifecycle_*.py
    tests/test_auth_isolation.py tests/test_auth_scopes.py tests/test_retention.py
    tests/test_cluster_*.py
)

cleanup() {
    local rc=$?
    trap - EXIT
    if [[ "$started" == 1 ]]; then
        echo "test.sh: stopping the stack this run started" >&2
        "$BIN/python" -m devstack down || echo "test.sh: stack down failed" >&2
    fi
    if [[ "$cluster_started" == 1 ]]; then
        echo "test.sh: stopping the cluster stack this run started" >&2
        "$BIN/python" -m devstack down --cluster || echo "test.sh: cluster stack down failed" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() {
    echo "==> $*"
    "$@"
}

# pytest's exit 5 (no test collected) is a failure too.
run_pytest() {
    local rc=0
    step "$BIN/pytest" "$@" || rc=$?
    if [[ "$rc" == 5 ]]; then
        echo "test.sh: pytest collected no tests; that is a failure" >&2
    fi
    return "$rc"
}

# The static checks are defined once, in scripts/lint.sh (also `make lint`).
bash scripts/lint.sh

rc=0
if [[ "$PASSES" != cluster ]]; then
    stack_env="$("$BIN/python" -m devstack up --env)"
    eval "$stack_env"
    started="$JOBLENS_STACK_STARTED"
    unset JOBLENS_STACK_STARTED
    export JOBLENS_REDIS_URL JOBLENS_ELASTICSEARCH_URL
    echo "test.sh: redis=$JOBLENS_REDIS_URL elasticsearch=$JOBLENS_ELASTICSEARCH_URL (started here: $started)"
    # The cluster's own tests run in the cluster pass.
    run_pytest --ignore-glob='*/test_cluster_*' "$@" || rc=$?
fi
if [[ "$PASSES" != single ]]; then  # also after a failed first pass: its findings are worth the minutes
    cluster_env="$("$BIN/python" -m devstack up --cluster --env)"
    eval "$cluster_env"
    cluster_started="$JOBLENS_STACK_STARTED"
    unset JOBLENS_STACK_STARTED
    export JOBLENS_REDIS_URL JOBLENS_ELASTICSEARCH_URL JOBLENS_INDEX_REPLICAS
    echo "test.sh: cluster pass: redis=$JOBLENS_REDIS_URL elasticsearch=$JOBLENS_ELASTICSEARCH_URL" \
        "(started here: $cluster_started)"
    run_pytest "${CLUSTER_TESTS[@]}" || rc=$?
fi
exit "$rc"
