#!/usr/bin/env bash
# The static checks, defined once: `make lint` and scripts/test.sh (what CI runs) both call this script, and
# `make fmt` calls it with --fix to apply what the checks would flag and ruff can fix.
# Usage: scripts/lint.sh          ruff check, ruff format --check, mypy --strict
#        scripts/lint.sh --fix    ruff check --fix, then ruff format (mypy has nothing to fix)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN="${VENV:-.venv}/bin"
TYPED=(service joblens_client devstack tests bench)  # what mypy --strict checks; ruff checks the whole tree

step() {
    echo "==> $*"
    "$@"
}

case "${1:-}" in
    "")
        step "$BIN/ruff" check .
        step "$BIN/ruff" format --check .
        step "$BIN/mypy" --strict "${TYPED[@]}"
        ;;
    --fix)
        # Fix first, then format what the fixes left; a finding ruff cannot fix still fails the run.
        rc=0
        step "$BIN/ruff" check --fix . || rc=$?
        step "$BIN/ruff" format .
        exit "$rc"
        ;;
    *)
        echo "usage: scripts/lint.sh [--fix]" >&2
        exit 2
        ;;
esac
