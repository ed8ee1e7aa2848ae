#!/usr/bin/env bash
# Installs/checks the system tools the local stack needs: redis-server (Debian package),
# Maven (to fetch Elasticsearch once) and a Java 21+ JDK (to run it). Idempotent and quiet
# when everything is present. Installs with apt-get only when running as root.
set -euo pipefail

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v mvn >/dev/null || missing+=(maven)

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
