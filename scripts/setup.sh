#!/usr/bin/env bash
# Installs/checks the system tools the local stack needs: redis-server (Debian package),
# Maven (to fetch Elasticsearch once), a Java 21+ JDK (to run it), what `make venv` needs
# for `python3 -m venv` (Debian ships ensurepip apart, in python3-venv), and Chromium for the
# web viewer's browser tests. Idempotent and quiet when everything is present. Installs with
# apt-get only when running as root.
set -euo pipefail

# `python3 -m venv` bootstraps pip with ensurepip; without it (Debian without python3-venv) it fails.
venv_works() { python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v mvn >/dev/null || missing+=(maven)
# the browser the web viewer's tests drive (tests/ui_helpers.py): Debian's, never a browser download of its own
command -v chromium >/dev/null || missing+=(chromium)
if ! command -v python3 >/dev/null; then
    missing+=(python3 python3-venv)
elif ! venv_works; then
    missing+=(python3-venv)
fi

if ((${#missing[@]})); then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "setup: installing ${missing[*]} with apt-get" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: missing ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

# python3-venv serves the distribution's python3: another python3 first on PATH (pyenv, /usr/local) may still lack it.
if ! venv_works; then
    echo "setup: $(command -v python3) cannot create a venv (no ensurepip); install its venv support" >&2
    exit 1
fi

java_major() { # $1 = JDK home; prints its major version or 0
    local out
    out="$("$1/bin/java" -version 2>&1 | head -n1)" || { echo 0; return; }
    if [[ "$out" =~ version\ \"1\.([0-9]+) ]] || [[ "$out" =~ version\ \"([0-9]+) ]]; then
        echo "${BASH_REMATCH[1]}"
    else
        echo 0
    fi
}

if [[ -n "${JOBLENS_ES_JAVA_HOME:-}" ]]; then
    if (($(java_major "$JOBLENS_ES_JAVA_HOME") < 21)); then
        echo "setup: JOBLENS_ES_JAVA_HOME=$JOBLENS_ES_JAVA_HOME is not a Java 21+ JDK" >&2
        exit 1
    fi
else
    found=""
    for home in /usr/lib/jvm/*/; do
        if [[ -x "$home/bin/java" ]] && (($(java_major "${home%/}") >= 21)); then
            found="${home%/}"
            break
        fi
    done
    if [[ -z "$found" ]]; then
        echo "setup: Elasticsearch needs a Java 21+ JDK in /usr/lib/jvm (or set JOBLENS_ES_JAVA_HOME)" >&2
        exit 1
    fi
fi
