#!/usr/bin/env bash
# Install Moorage into ./.venv and run it on the embedded default: SQLite + filesystem under
# ./moorage-data/ (MOORAGE_DATA_DIR overrides), plain HTTP on 127.0.0.1:5000.
# Works as root on a fresh Debian 12; extra arguments go to `moorage serve`, e.g.
#   bash scripts/install-and-serve.sh --listen 0.0.0.0:5000
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# python3 with venv + pip: Debian splits them into separate packages, and a minimal image has none.
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "python3 (>= 3.11) with venv and pip is required: apt-get install python3 python3-venv python3-pip" >&2
        exit 1
    fi
    log "installing python3, python3-venv, python3-pip"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q python3 python3-venv python3-pip
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Moorage needs Python >= 3.11; found $(python3 --version)" >&2
    exit 1
fi

if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
# The pinned set (requirements.lock, hashes checked; scripts/lock.sh writes it), then Moorage
# itself without dependencies, so nothing unpinned comes in.
log "installing requirements.lock and moorage into .venv"
.venv/bin/pip install -q --require-hashes -r requirements.lock
.venv/bin/pip install -q --no-deps -e .
if ! .venv/bin/pip check >&2; then
    echo "requirements.lock does not satisfy pyproject.toml; run scripts/lock.sh (or report it)" >&2
    exit 1
fi

log "starting moorage serve (embedded default; data in ${MOORAGE_DATA_DIR:-./moorage-data})"
exec .venv/bin/moorage serve "$@"
