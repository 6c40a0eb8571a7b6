#!/usr/bin/env bash
# swift-saio.sh — Moorage's own starter for OpenStack Swift "all in one" (proxy + account + container + object
# servers, one replica, one device, tempauth + s3api) on 127.0.0.1, for
# integration tests of the registry's Swift (and, secondarily, S3) storage driver.
#
#   swift-saio up      install Debian's Swift packages if missing, create rings and
#                      configs (first time only), start memcached and the four
#                      servers, wait until auth works, print env lines on stdout
#   swift-saio env     print the env lines of a running SAIO (exit 1 if not running)
#   swift-saio down    stop the processes this script started (by pid file)
#   swift-saio status  show which processes run and whether auth works
#   swift-saio purge   down + delete the data dir
#
#   eval "$(tests/services/swift-saio.sh up)"   # exports SWIFT_AUTH_URL, SWIFT_USER, ...
#
# Only stdout carries KEY=VALUE lines; progress and timings go to stderr. The env
# names are the same as ceph-rgw's, so a test reads one or the other.
# Everything listens on 127.0.0.1. Swift's syslog logging is pointed at
# 127.0.0.1 UDP (nothing listens; no /dev/log here); the servers also run with
# --verbose, so their logs land in $SWIFT_SAIO_DIR/log/*.log.
# The servers read /etc/swift/swift.conf (hash prefix/suffix, storage policy 0)
# as Debian ships it; everything else lives in $SWIFT_SAIO_DIR.
#
# Settings (environment variables, all optional):
#   SWIFT_SAIO_DIR        data dir                                (/var/tmp/moorage-swift-saio)
#   SWIFT_SAIO_PORT       proxy port                              (8180)
#   SWIFT_SAIO_BASE_PORT  object/container/account server ports:
#                         BASE, BASE+1, BASE+2                    (6300)
#   SWIFT_SAIO_MEMCACHED_PORT                                     (11312)
#   SWIFT_SAIO_KEY        key of the test user registry:swift
set -euo pipefail

DIR=${SWIFT_SAIO_DIR:-/var/tmp/moorage-swift-saio}
PROXY_PORT=${SWIFT_SAIO_PORT:-8180}
BASE_PORT=${SWIFT_SAIO_BASE_PORT:-6300}
OBJ_PORT=$BASE_PORT
CONT_PORT=$((BASE_PORT + 1))
ACCT_PORT=$((BASE_PORT + 2))
MC_PORT=${SWIFT_SAIO_MEMCACHED_PORT:-11312}
ACCOUNT=registry
USERNAME=swift
SWIFT_USER="$ACCOUNT:$USERNAME"
SWIFT_KEY=${SWIFT_SAIO_KEY:-registry-test-swift-key-0123456789abcdef}

HOST=127.0.0.1
ETC=$DIR/etc
RUN=$DIR/run
LOGDIR=$DIR/log
SRV=$DIR/srv
URL="http://$HOST:$PROXY_PORT"
SERVERS=(object container account proxy)

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
T0=$(now_ms)
fmt_s() { local ms=$1; printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
log() { echo "[moorage-swift-saio $(fmt_s $(($(now_ms) - T0)))s] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
phase() {
  local name=$1 t; shift
  t=$(now_ms)
  "$@"
  log "phase '$name' took $(fmt_s $(($(now_ms) - t)))s"
}

# ---------------------------------------------------------------- packages --
ensure_packages() {
  local b missing=0
  for b in swift-proxy-server swift-object-server swift-container-server \
           swift-account-server swift-ring-builder memcached curl; do
    command -v "$b" >/dev/null || missing=1
  done
  [[ $missing == 0 ]] && return 0
  local pkgs=(swift swift-proxy swift-object swift-container swift-account memcached curl)
  local aptlog=${TMPDIR:-/tmp}/swift-saio-apt.$$.log
  log "installing ${pkgs[*]} with apt (~11 MB download, ~15 s; log: $aptlog)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${pkgs[@]}"; } >"$aptlog" 2>&1 \
    || { tail -30 "$aptlog" >&2; die "apt-get install failed (full log: $aptlog)"; }
  log "apt: $(grep -E '^Fetched' "$aptlog" | tail -1 || true)"
  [[ -s /etc/swift/swift.conf ]] || die "/etc/swift/swift.conf missing after install"
}

# ------------------------------------------------------------ pid helpers --
# Our processes run in the foreground under setsid; $! is recorded in
# run/NAME.pid. A pid counts as ours only if its command line names our dir.
proc_pid() {
  local f=$RUN/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$2" || return 1
  echo "$pid"
}
marker() { [[ $1 == memcached ]] && echo "-p $MC_PORT" || echo "$ETC/$1-server.conf"; }
running() { proc_pid "$1" "$(marker "$1")" >/dev/null; }

stop_proc() {
  local name=$1 pid
  pid=$(proc_pid "$name" "$(marker "$name")") || { rm -f "$RUN/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
  log "stopped $name (pid $pid)"
}

# A zombie (exited, not yet reaped by PID 1) counts as dead.
alive() { [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# start NAME CMD... : run CMD in its own session, in the background, log to file
start() {
  local name=$1; shift
  running "$name" && { log "$name already running"; return 0; }
  setsid "$@" </dev/null >>"$LOGDIR/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

# ---------------------------------------------------------------- creation --
server_conf() {  # $1 = object|container|account, $2 = port
  cat <<EOF
[DEFAULT]
bind_ip = $HOST
bind_port = $2
workers = 0
user = root
swift_dir = $ETC
devices = $SRV
mount_check = false
disable_fallocate = true
log_udp_host = $HOST
log_name = $1-server

[pipeline:main]
pipeline = healthcheck recon $1-server

[app:$1-server]
use = egg:swift#$1

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:recon]
use = egg:swift#recon
recon_cache_path = $DIR/cache
EOF
  [[ $1 == container ]] && printf '\n[container-sync]\n'
  [[ $1 == object ]] && printf '\n[object-updater]\n\n[object-replicator]\n'
  return 0
}

write_confs() {
  mkdir -p "$ETC"
  server_conf object "$OBJ_PORT" >"$ETC/object-server.conf"
  server_conf container "$CONT_PORT" >"$ETC/container-server.conf"
  server_conf account "$ACCT_PORT" >"$ETC/account-server.conf"
  # The Debian sample pipeline plus s3api (S3 signatures checked by tempauth,
  # access key = "registry:swift", secret = the Swift key).
  cat >"$ETC/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = $HOST
bind_port = $PROXY_PORT
workers = 0
user = root
swift_dir = $ETC
log_udp_host = $HOST
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy container-quotas account-quotas slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_${ACCOUNT}_${USERNAME} = $SWIFT_KEY .admin
user_admin_admin = admin .admin .reseller_admin

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:cache]
use = egg:swift#memcache
memcache_servers = $HOST:$MC_PORT

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:copy]
use = egg:swift#copy
[filter:container-quotas]
use = egg:swift#container_quotas
[filter:account-quotas]
use = egg:swift#account_quotas
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true
[filter:symlink]
use = egg:swift#symlink
EOF
}

create_saio() {
  log "creating a new SAIO in $DIR"
  if [[ -d $DIR && -n $(ls -A "$DIR") && ! -e $DIR/etc/object.builder ]]; then
    die "$DIR is not empty and holds no swift-saio; refusing to wipe it"
  fi
  rm -rf "$DIR"
  mkdir -p "$SRV/d1" "$RUN" "$LOGDIR" "$DIR/cache"
  write_confs
  # One device, one replica, 2^8 partitions; the device name "d1" is the
  # directory $SRV/d1 (mount_check = false).
  local ring port
  for ring in object container account; do
    case $ring in object) port=$OBJ_PORT ;; container) port=$CONT_PORT ;; account) port=$ACCT_PORT ;; esac
    swift-ring-builder "$ETC/$ring.builder" create 8 1 1 >/dev/null
    swift-ring-builder "$ETC/$ring.builder" add "r1z1-$HOST:$port/d1" 1 >/dev/null
    swift-ring-builder "$ETC/$ring.builder" rebalance >/dev/null
  done
  echo "$OBJ_PORT $CONT_PORT $ACCT_PORT" >"$DIR/ports"
}

# ------------------------------------------------------------------ daemons --
start_all() {
  local s p
  if ! running memcached; then
    port_busy "$MC_PORT" && die "port $MC_PORT is in use by something else"
    start memcached memcached -l "$HOST" -p "$MC_PORT" -U 0 -m 64 -u nobody
  fi
  for s in "${SERVERS[@]}"; do
    running "$s" && { log "$s already running"; continue; }
    case $s in object) p=$OBJ_PORT ;; container) p=$CONT_PORT ;; account) p=$ACCT_PORT ;; proxy) p=$PROXY_PORT ;; esac
    port_busy "$p" && die "port $p ($s) is in use by something else"
    start "$s" "swift-$s-server" "$ETC/$s-server.conf" --verbose
  done
}

auth_ok() {
  [[ $(curl -s -o /dev/null -m 3 -w '%{http_code}' -H "X-Auth-User: $SWIFT_USER" \
       -H "X-Auth-Key: $SWIFT_KEY" "$URL/auth/v1.0") == 200 ]]
}

wait_ready() {
  local s
  for _ in $(seq 1 120); do
    # backends must answer /healthcheck and auth must hand out a token
    local ok=1
    for s in "$OBJ_PORT" "$CONT_PORT" "$ACCT_PORT"; do
      curl -s -o /dev/null -m 2 "http://$HOST:$s/healthcheck" || ok=0
    done
    [[ $ok == 1 ]] && auth_ok && return 0
    for s in memcached "${SERVERS[@]}"; do
      running "$s" || die "$s died, see $LOGDIR/$s.log"
    done
    sleep 0.25
  done
  die "SAIO not ready within 30 s, see $LOGDIR/"
}

print_env() {
  cat <<EOF
SWIFT_AUTH_URL=$URL/auth/v1.0
SWIFT_USER=$SWIFT_USER
SWIFT_KEY=$SWIFT_KEY
S3_ENDPOINT=$URL
S3_REGION=us-east-1
S3_ACCESS_KEY=$SWIFT_USER
S3_SECRET_KEY=$SWIFT_KEY
EOF
}

# ----------------------------------------------------------------- commands --
cmd_up() {
  phase packages ensure_packages
  log "swift $(dpkg-query -W -f='${Version}' swift-proxy 2>/dev/null), data dir $DIR"
  if [[ ! -e $DIR/.complete || $(cat "$DIR/ports" 2>/dev/null) != "$OBJ_PORT $CONT_PORT $ACCT_PORT" ]]; then
    cmd_down 2>/dev/null || true
    phase create create_saio
  else
    running proxy || write_confs    # proxy/memcached ports and key may change
  fi
  phase start start_all
  phase ready wait_ready
  touch "$DIR/.complete"
  log "up: Swift at $URL"
  print_env | tee "$DIR/env"
}

cmd_env() {
  running proxy || { echo "swift-saio: not running (run: $0 up)" >&2; exit 1; }
  print_env
}

cmd_down() {
  [[ -d $RUN ]] || { log "nothing to stop ($DIR absent)"; return 0; }
  local s
  for s in proxy object container account memcached; do stop_proc "$s"; done
}

cmd_status() {
  local s pid rc=0
  for s in memcached "${SERVERS[@]}"; do
    if pid=$(proc_pid "$s" "$(marker "$s")"); then
      printf '%-10s running  pid %-7s rss %s kB\n' "$s" "$pid" "$(awk '/VmRSS/{print $2}' "/proc/$pid/status")"
    else
      printf '%-10s stopped\n' "$s"; rc=1
    fi
  done
  if auth_ok; then echo "auth: OK at $URL/auth/v1.0"; else echo "auth: failing at $URL/auth/v1.0"; rc=1; fi
  return $rc
}

cmd_purge() {
  [[ ! -d $DIR || -e $DIR/etc/object.builder || -z $(ls -A "$DIR") ]] || die "$DIR holds no swift-saio; not removing it"
  cmd_down; rm -rf "$DIR"; log "removed $DIR"
}

case ${1:-} in
  up) cmd_up ;;
  env) cmd_env ;;
  down) cmd_down ;;
  status) cmd_status ;;
  purge) cmd_purge ;;
  *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
