#!/usr/bin/env bash
# Install everything the tests need and run the whole suite; non-zero on any failure.
#
# As root on Debian 12: installs the missing Debian packages (real clients, the reference
# registry, the services), starts a throwaway PostgreSQL / Redis only when nothing answers on
# 127.0.0.1:5432 / :6379 (and stops them again at exit; a private PostgreSQL on another port
# when the one on 5432 refuses a passwordless login), creates .venv, installs the pinned
# requirements-test.lock then the project (see scripts/lock.sh), runs pytest over tests/.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k skopeo`.
#
# Environment: CI=true makes every would-be skip a failure. MOORAGE_TEST_POSTGRES_URL /
# MOORAGE_TEST_REDIS_URL point the tests at other servers (then nothing is started here).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # wait_port PORT WHAT
    for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.2; done
    echo "$2 did not start listening on 127.0.0.1:$1" >&2
    return 1
}

# -- Debian packages ------------------------------------------------------------------------
# Clients and reference: skopeo podman buildah docker-registry. Services: postgresql, redis.
# slapd + ldap-utils: the LDAP directory the identity-source tests start and seed (tests/services/ldap.py).
# chromium: the browser the web UI tests drive with Playwright (its own browser download is unreachable).
# nodejs + npm: the OIDC tests' provider (npm's oidc-provider, pinned in tests/services/oidc/package-lock.json).
#   Only when no npm is on the PATH: NodeSource's nodejs bundles npm and conflicts with Debian's.
# systemd: only its systemd-analyze, which checks deploy/systemd/moorage.service (nothing is started).
# podman/buildah as root without systemd: crun (OCI runtime), fuse-overlayfs (overlay fallback),
# uidmap + slirp4netns (podman's hard/soft requirements), containers-common (policy.json).
# The container image test: mmdebstrap makes its Debian base offline, runc runs it.
PACKAGES=(
    python3 python3-venv python3-pip
    skopeo podman buildah docker-registry golang-github-containers-common
    crun fuse-overlayfs uidmap slirp4netns mmdebstrap runc
    nginx redis-server redis-sentinel redis-tools postgresql
    chromium
    slapd ldap-utils
    systemd
)
command -v npm >/dev/null || PACKAGES+=(nodejs npm)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing Debian packages (install them as root): ${missing[*]}" >&2
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi

# -- throwaway services ---------------------------------------------------------------------
SCRATCH="$(mktemp -d /tmp/moorage-test-services.XXXXXX)"
chmod 755 "$SCRATCH"  # the postgres user must reach its data dir inside
STARTED_PG="" STARTED_REDIS=""
cleanup() {
    if [ -n "$STARTED_PG" ]; then
        runuser -u postgres -- "$STARTED_PG/pg_ctl" -D "$SCRATCH/pg" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "$STARTED_REDIS" ]; then
        redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

if [ -z "${MOORAGE_TEST_POSTGRES_URL:-}" ]; then
    # Use what answers on 5432 when the passwordless postgres login works there (as on a dev
    # machine set up for it). Otherwise run a private trust-auth instance from Debian's binaries:
    # the packaged `main` cluster, which apt may have just started, only allows password (scram)
    # logins over TCP, and the tests must not alter it. That instance takes 5432 when free.
    pg_port=5432
    if port_open 5432 && ! PGCONNECT_TIMEOUT=5 psql -w -Atq -c 'select 1' \
            "postgresql://postgres@127.0.0.1:5432/postgres" >/dev/null 2>&1; then
        pg_port=55432
        while port_open "$pg_port"; do pg_port=$((pg_port + 1)); done
        log "PostgreSQL on 127.0.0.1:5432 refuses a passwordless postgres login; using a private one"
    fi
    if ! port_open "$pg_port"; then
        bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
        log "starting a throwaway PostgreSQL ($bindir) on 127.0.0.1:$pg_port"
        install -d -o postgres -g postgres "$SCRATCH/pg" "$SCRATCH/pgrun"
        runuser -u postgres -- "$bindir/initdb" -D "$SCRATCH/pg" -U postgres --auth=trust >"$SCRATCH/initdb.log"
        runuser -u postgres -- "$bindir/pg_ctl" -D "$SCRATCH/pg" -l "$SCRATCH/pgrun/postgres.log" -w \
            -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $SCRATCH/pgrun -c fsync=off" start >/dev/null
        STARTED_PG="$bindir"
        wait_port "$pg_port" PostgreSQL
    fi
    export MOORAGE_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$pg_port/postgres"
fi
if [ -z "${MOORAGE_TEST_REDIS_URL:-}" ] && ! port_open 6379; then
    log "starting a throwaway Redis on 127.0.0.1:6379"
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no \
        --dir "$SCRATCH" --logfile "$SCRATCH/redis.log" --pidfile "$SCRATCH/redis.pid"
    STARTED_REDIS=1
    wait_port 6379 Redis
fi
export MOORAGE_TEST_REDIS_URL="${MOORAGE_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"

# -- Python ---------------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
# The pinned set first (hashes checked), then the project itself without dependencies, so
# nothing unpinned comes in. `pip check` catches a lock that pyproject.toml has outgrown.
# pip may warn "Location 'file:///opt/pypi-more/simple/…' is ignored": a machine-wide extra
# index that lacks that package; pip takes it from the other indexes, the hashes still hold.
log "installing requirements-test.lock and moorage (editable, --no-deps) into .venv"
.venv/bin/pip install -q --require-hashes -r requirements-test.lock
.venv/bin/pip install -q --no-deps -e .
if ! .venv/bin/pip check >&2; then
    echo "==> FAILED: requirements-test.lock does not satisfy pyproject.toml; run scripts/lock.sh and commit" >&2
    exit 1
fi

# -- the suite ------------------------------------------------------------------------------
log "running pytest (CI=${CI:-unset})"
rc=0
.venv/bin/python -m pytest -p no:cacheprovider -ra --timeout=600 --durations=15 tests "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "==> FAILED: pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
if [ "$rc" -ne 0 ]; then
    # The last word of the run: pytest's summary above says which tests failed (or, under
    # CI=true, which ones skipped); this line says the run as a whole did not pass.
    echo "==> FAILED: pytest exited with status $rc; see the FAILED/ERROR lines and the summary above" >&2
fi
exit "$rc"
