#!/usr/bin/env bash
# Full check suite (lint, format, types, tests) against the local Redis + Elasticsearch stack.
# Starts the stack if it is not running and stops it again on exit only if this run started it.
# Usage: scripts/test.sh [extra pytest args]   (normally via `make test`)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${VENV:-.venv}/bin"
started=0

cleanup() {
    local rc=$?
    trap - EXIT
    if [[ "$started" == 1 ]]; then
        echo "test.sh: stopping the stack this run started" >&2
        "$BIN/python" -m devstack down || echo "test.sh: stack down failed" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stack_env="$("$BIN/python" -m devstack up --env)"
eval "$stack_env"
started="$JOBLENS_STACK_STARTED"
unset JOBLENS_STACK_STARTED
export JOBLENS_REDIS_URL JOBLENS_ELASTICSEARCH_URL
echo "test.sh: redis=$JOBLENS_REDIS_URL elasticsearch=$JOBLENS_ELASTICSEARCH_URL (started here: $started)"

step() {
    echo "==> $*"
    "$@"
}

# The static checks are defined once, in scripts/lint.sh (also `make lint`).
bash scripts/lint.sh

rc=0
step "$BIN/pytest" "$@" || rc=$?
if [[ "$rc" == 5 ]]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
fi
exit "$rc"
