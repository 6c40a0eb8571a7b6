#!/usr/bin/env bash
# ceph-rgw.sh — Moorage's own starter for a real single-node Ceph cluster with the RADOS Gateway (S3 + Swift)
# on 127.0.0.1, for integration tests of the registry's storage drivers.
#
#   ceph-rgw up      install Debian's Ceph packages if missing, create the cluster
#                    (first time only), start mon [+ mgr] + osd + radosgw, create the
#                    test users, wait until RGW answers, print env lines on stdout
#   ceph-rgw env     print the env lines of a running cluster (exit 1 if not running)
#   ceph-rgw down    stop the daemons this script started (by pid file); data is kept
#   ceph-rgw status  show which daemons run, `ceph -s`, and whether RGW answers
#   ceph-rgw purge   down + delete the data dir
#
# Typical use in CI / a test session:
#   eval "$(tests/services/ceph-rgw.sh up)"     # exports S3_ENDPOINT, SWIFT_AUTH_URL, ...
#   pytest -m ceph ...
#   tests/services/ceph-rgw.sh down
#
# Only stdout carries the KEY=VALUE lines; all progress and timings go to stderr.
# Everything listens on 127.0.0.1 only. No systemd is used: each daemon daemonizes
# itself and writes $CEPH_RGW_DIR/run/<name>.pid, which `down` uses.
#
# Settings (environment variables, all optional):
#   CEPH_RGW_DIR          data dir                           (/var/tmp/moorage-ceph-rgw)
#   CEPH_RGW_PORT         RGW HTTP port (beast)              (7580)
#   CEPH_RGW_TLS_PORT     RGW HTTPS port, self-signed cert for 127.0.0.1/localhost
#                         in $CEPH_RGW_DIR/tls/cert.pem; empty = no TLS   (7543)
#   CEPH_MON_PORT         mon msgr2 port                     (3310)
#   CEPH_MON_V1_PORT      mon legacy msgr1 port              (6799)
#   CEPH_RGW_OBJECTSTORE  bluestore (file-backed, persists across down/up) or
#                         memstore (RAM only; `up` after `down` then re-creates
#                         the cluster from scratch)          (bluestore)
#   CEPH_RGW_OSD_SIZE     size of the sparse bluestore block file (10G)
#   CEPH_RGW_MGR          1 to also run a ceph-mgr (not needed by RGW)   (0)
#   CEPH_RGW_S3_ACCESS_KEY / CEPH_RGW_S3_SECRET_KEY / CEPH_RGW_SWIFT_KEY
#                         credentials of the test user (fixed defaults below)
set -euo pipefail

DIR=${CEPH_RGW_DIR:-/var/tmp/moorage-ceph-rgw}
RGW_PORT=${CEPH_RGW_PORT:-7580}
TLS_PORT=${CEPH_RGW_TLS_PORT-7543}
MON_PORT=${CEPH_MON_PORT:-3310}
MON_V1_PORT=${CEPH_MON_V1_PORT:-6799}
OBJECTSTORE=${CEPH_RGW_OBJECTSTORE:-bluestore}
OSD_SIZE=${CEPH_RGW_OSD_SIZE:-10G}
WITH_MGR=${CEPH_RGW_MGR:-0}
RGW_UID=registry
S3_ACCESS_KEY=${CEPH_RGW_S3_ACCESS_KEY:-REGISTRYTESTACCESSKEY}
S3_SECRET_KEY=${CEPH_RGW_S3_SECRET_KEY:-registry-test-secret-key-0123456789abcdef}
SWIFT_USER="$RGW_UID:swift"
SWIFT_KEY=${CEPH_RGW_SWIFT_KEY:-registry-test-swift-key-0123456789abcdef}

CONF=$DIR/ceph.conf
RUN=$DIR/run
LOGDIR=$DIR/log
HOST=127.0.0.1
RGW_URL="http://$HOST:$RGW_PORT"
TLS_DIR=$DIR/tls
# Changing any of these needs a new cluster (the mon address is in the monmap).
SETTINGS="objectstore=$OBJECTSTORE mon=$MON_PORT,$MON_V1_PORT osd_size=$OSD_SIZE"
# Every CLI call names our conf explicitly and never blocks forever on a dead mon.
CEPH=(ceph -c "$CONF" --connect-timeout 20)
RGWADMIN=(radosgw-admin -c "$CONF")

# Timing uses bash's $EPOCHREALTIME (microseconds), no external tools.
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
T0=$(now_ms)
fmt_s() { local ms=$1; printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
log() { echo "[moorage-ceph-rgw $(fmt_s $(($(now_ms) - T0)))s] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# phase NAME CMD... : run CMD and log how long it took
phase() {
  local name=$1 t; shift
  t=$(now_ms)
  "$@"
  log "phase '$name' took $(fmt_s $(($(now_ms) - t)))s"
}

# ---------------------------------------------------------------- packages --
need_bins() {
  local b=(ceph ceph-mon ceph-osd ceph-authtool monmaptool radosgw radosgw-admin curl openssl)
  [[ $WITH_MGR == 1 ]] && b+=(ceph-mgr)
  printf '%s\n' "${b[@]}"
}

ensure_packages() {
  local missing=0 b
  for b in $(need_bins); do command -v "$b" >/dev/null || missing=1; done
  [[ $missing == 0 ]] && return 0
  local pkgs=(ceph-mon ceph-osd radosgw ceph-common curl openssl)
  [[ $WITH_MGR == 1 ]] && pkgs+=(ceph-mgr)
  local aptlog=${TMPDIR:-/tmp}/ceph-rgw-apt.$$.log
  log "installing ${pkgs[*]} with apt (~61 MB download, ~15 s; log: $aptlog)"
  export DEBIAN_FRONTEND=noninteractive
  # Without systemd as PID 1 the postinst scripts cannot start any service:
  # their complaints land in the log; the daemons are started below instead.
  { apt-get update -q && apt-get install -y -q --no-install-recommends "${pkgs[@]}"; } >"$aptlog" 2>&1 \
    || { tail -30 "$aptlog" >&2; die "apt-get install failed (full log: $aptlog)"; }
  log "apt: $(grep -E '^Fetched' "$aptlog" | tail -1 || true)"
}

# ------------------------------------------------------------ pid helpers --
# A daemon is "ours" if its pid file names a live process whose command line
# mentions our ceph.conf (protects against pid reuse after a reboot).
daemon_pid() {  # $1 = ceph entity name (mon.a, osd.0, mgr.x, client.rgw.gw)
  local f=$RUN/$1.pid pid
  [[ -s $f ]] || return 1
  pid=$(<"$f")
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$CONF" || return 1
  echo "$pid"
}
running() { daemon_pid "$1" >/dev/null; }

stop_daemon() {
  local name=$1 pid
  pid=$(daemon_pid "$name") || { rm -f "$RUN/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do          # up to 10 s for a clean shutdown
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$RUN/$name.pid"
  log "stopped $name (pid $pid)"
}

# A zombie (exited, not yet reaped by PID 1) counts as dead.
alive() { [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# ---------------------------------------------------------------- creation --
write_conf() {
  # Rewritten on every `up`, so RGW port/TLS changes apply after a down/up.
  local fsid frontends="beast endpoint=$HOST:$RGW_PORT"
  fsid=$(<"$DIR/fsid")
  if [[ -n $TLS_PORT ]]; then
    frontends+=" ssl_endpoint=$HOST:$TLS_PORT ssl_certificate=$TLS_DIR/cert.pem ssl_private_key=$TLS_DIR/key.pem"
  fi
  # \$name etc. are Ceph metavariables, expanded by Ceph, not by bash.
  cat >"$CONF" <<EOF
# Generated by ceph-rgw. Single-node test cluster bound to $HOST only.
[global]
fsid = $fsid
mon host = [v2:$HOST:$MON_PORT,v1:$HOST:$MON_V1_PORT]
public addr = $HOST
cluster addr = $HOST
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/keyring
run dir = $RUN
crash dir = $DIR/crash
pid file = $RUN/\$name.pid
# one OSD: size-1 pools, no failure domain above the OSD, few PGs
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon max pg per osd = 1000
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1

[mon]
mon data = $DIR/\$name
log file = $LOGDIR/\$name.log
admin socket = $RUN/\$name.asok
mon cluster log file = $LOGDIR/cluster.log
# commit map changes at once (default waits 1 s per change; RGW's first start
# creates ~6 pools, each several map changes)
paxos propose interval = 0.01
paxos min wait = 0.001

[mgr]
mgr data = $DIR/\$name
log file = $LOGDIR/\$name.log
admin socket = $RUN/\$name.asok
keyring = $DIR/\$name/keyring
# no dashboard/prometheus/restful listeners
mgr initial modules =

[osd]
osd data = $DIR/\$name
keyring = $DIR/\$name/keyring
log file = $LOGDIR/\$name.log
admin socket = $RUN/\$name.asok
osd objectstore = $OBJECTSTORE
osd crush update on start = true
osd crush initial weight = 1
osd memory target = 939524096
bluestore block create = true
bluestore block size = $(numfmt --from=iec "$OSD_SIZE")
bluestore fsck on mkfs = false
bluestore fsck on mount = false
bluestore fsck on umount = false
bluestore cache autotune = false
bluestore cache size = 134217728
memstore device bytes = 4294967296

[client.rgw.gw]
keyring = $DIR/\$name/keyring
rgw data = $DIR/\$name
log file = $LOGDIR/\$name.log
admin socket = $RUN/\$name.asok
rgw frontends = $frontends
rgw thread pool size = 64
rgw enable usage log = false
rgw enable ops log = false
EOF
}

create_cluster() {
  log "creating a new cluster in $DIR ($OBJECTSTORE)"
  # Never wipe a directory this script did not make.
  if [[ -d $DIR && -n $(ls -A "$DIR") && ! -e $DIR/fsid ]]; then
    die "$DIR is not empty and holds no ceph-rgw cluster; refusing to wipe it"
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"/{mon.a,osd.0,client.rgw.gw,crash} "$RUN" "$LOGDIR"
  [[ $WITH_MGR == 1 ]] && mkdir -p "$DIR/mgr.x"
  local fsid osd_uuid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  echo "$fsid" >"$DIR/fsid"
  write_conf

  # One keyring holds every entity with its caps; `ceph-mon --mkfs` imports them
  # all into the auth database, so no `ceph auth add` round trips are needed.
  local kr=$DIR/keyring
  exec 3>&1 1>/dev/null   # ceph-authtool/monmaptool chatter: keep stdout clean
  ceph-authtool "$kr" --create-keyring --gen-key -n mon. --cap mon 'allow *'
  ceph-authtool "$kr" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'
  ceph-authtool "$kr" --gen-key -n osd.0 \
    --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
  ceph-authtool "$kr" --gen-key -n client.rgw.gw \
    --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw'
  ceph-authtool "$kr" --gen-key -n mgr.x \
    --cap mon 'allow profile mgr' --cap osd 'allow *' --cap mds 'allow *'
  ceph-authtool "$DIR/osd.0/keyring" -C -n osd.0 --add-key "$(ceph-authtool "$kr" -p -n osd.0)"
  ceph-authtool "$DIR/client.rgw.gw/keyring" -C -n client.rgw.gw \
    --add-key "$(ceph-authtool "$kr" -p -n client.rgw.gw)"
  if [[ $WITH_MGR == 1 ]]; then
    ceph-authtool "$DIR/mgr.x/keyring" -C -n mgr.x --add-key "$(ceph-authtool "$kr" -p -n mgr.x)"
  fi

  monmaptool --create --fsid "$fsid" --addv a "[v2:$HOST:$MON_PORT,v1:$HOST:$MON_V1_PORT]" "$DIR/monmap"
  exec 1>&3 3>&-
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$kr"
  echo "$osd_uuid" >"$DIR/osd_uuid"
  echo "$SETTINGS" >"$DIR/settings"
}

ensure_tls_cert() {
  [[ -z $TLS_PORT || -s $TLS_DIR/cert.pem ]] && return 0
  mkdir -p "$TLS_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$HOST" \
    -addext "subjectAltName=IP:$HOST,DNS:localhost" \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>/dev/null
}

# ------------------------------------------------------------------ daemons --
start_mon() {
  running mon.a && { log "mon.a already running"; return 0; }
  port_busy "$MON_PORT" && die "port $MON_PORT is in use by something else"
  ceph-mon -c "$CONF" -i a 2>>"$LOGDIR/mon.a.stderr"
}

mkfs_osd() {
  # First start only: register osd.0 with the mon, then format its store.
  [[ -e $DIR/osd.0/.mkfs_done ]] && return 0
  local uuid id
  uuid=$(<"$DIR/osd_uuid")
  id=$("${CEPH[@]}" osd new "$uuid" 0)
  [[ $id == 0 ]] || die "ceph osd new returned '$id', expected 0"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" 2>>"$LOGDIR/osd.0.mkfs.log" \
    || die "ceph-osd --mkfs failed, see $LOGDIR/osd.0.mkfs.log and $LOGDIR/osd.0.log"
  touch "$DIR/osd.0/.mkfs_done"
}

start_osd() {
  running osd.0 && { log "osd.0 already running"; return 0; }
  ceph-osd -c "$CONF" -i 0 2>>"$LOGDIR/osd.0.stderr"
}

wait_osd_up() {
  local n
  for _ in $(seq 1 120); do
    n=$("${CEPH[@]}" osd stat -f json 2>/dev/null | sed -n 's/.*"num_up_osds":\([0-9]*\).*/\1/p')
    [[ ${n:-0} -ge 1 ]] && return 0
    running osd.0 || die "ceph-osd died, see $LOGDIR/osd.0.log"
    sleep 0.5
  done
  die "osd.0 did not come up within 60 s, see $LOGDIR/osd.0.log"
}

start_mgr() {
  [[ $WITH_MGR == 1 ]] || return 0
  running mgr.x && { log "mgr.x already running"; return 0; }
  ceph-mgr -c "$CONF" -i x 2>>"$LOGDIR/mgr.x.stderr"
}

start_rgw() {
  running client.rgw.gw && { log "radosgw already running"; return 0; }
  port_busy "$RGW_PORT" && die "port $RGW_PORT is in use by something else"
  [[ -n $TLS_PORT ]] && port_busy "$TLS_PORT" && die "port $TLS_PORT is in use by something else"
  radosgw -c "$CONF" -n client.rgw.gw 2>>"$LOGDIR/client.rgw.gw.stderr"
}

wait_rgw() {
  local code tcode
  for _ in $(seq 1 240); do
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$RGW_URL/" || true)
    tcode=200
    [[ -n $TLS_PORT ]] && tcode=$(curl -s -o /dev/null -m 2 -w '%{http_code}' --cacert "$TLS_DIR/cert.pem" "https://$HOST:$TLS_PORT/" || true)
    [[ $code == 200 && $tcode == 200 ]] && return 0
    running client.rgw.gw || die "radosgw died, see $LOGDIR/client.rgw.gw.log"
    sleep 0.25
  done
  die "radosgw did not answer on $RGW_URL within 60 s, see $LOGDIR/client.rgw.gw.log"
}

ensure_users() {
  [[ -e $DIR/.users_done ]] && return 0
  # S3 user with fixed keys, plus a Swift subuser for /auth/1.0 (tempauth-style).
  "${RGWADMIN[@]}" user create --uid="$RGW_UID" --display-name="Registry test user" \
    --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
  "${RGWADMIN[@]}" subuser create --uid="$RGW_UID" --subuser="$SWIFT_USER" \
    --access=full --key-type=swift --secret-key="$SWIFT_KEY" >/dev/null
  touch "$DIR/.users_done"
}

# RGW answers Swift v1 auth on any /auth/... path (/auth/1.0 too) with 204;
# real Swift (tempauth) only on /auth/v1.0, with 200: print the common form.
print_env() {
  cat <<EOF
S3_ENDPOINT=$RGW_URL
S3_REGION=default
S3_ACCESS_KEY=$S3_ACCESS_KEY
S3_SECRET_KEY=$S3_SECRET_KEY
SWIFT_AUTH_URL=$RGW_URL/auth/v1.0
SWIFT_USER=$SWIFT_USER
SWIFT_KEY=$SWIFT_KEY
EOF
  if [[ -n $TLS_PORT ]]; then
    cat <<EOF
S3_ENDPOINT_TLS=https://$HOST:$TLS_PORT
SWIFT_AUTH_URL_TLS=https://$HOST:$TLS_PORT/auth/v1.0
S3_CA_BUNDLE=$TLS_DIR/cert.pem
EOF
  fi
  echo "CEPH_CONF=$CONF"
}

# ----------------------------------------------------------------- commands --
cmd_up() {
  phase packages ensure_packages
  log "ceph $(ceph-osd --version | awk '{print $3}'), data dir $DIR"
  # A cluster is reusable if it was created with the same objectstore and, for
  # memstore, the OSD is still running (memstore loses its data when stopped).
  # .complete is written at the end of the first successful `up`, so a first
  # `up` that failed half-way is started over from scratch.
  local recreate=0
  [[ -e $DIR/.complete && -d $DIR/mon.a/store.db ]] || recreate=1
  [[ -s $DIR/settings && $(<"$DIR/settings") == "$SETTINGS" ]] || recreate=1
  [[ $OBJECTSTORE == memstore ]] && ! running osd.0 && recreate=1
  if [[ $recreate == 1 ]]; then
    cmd_down 2>/dev/null || true
    phase create create_cluster
  else
    running client.rgw.gw || write_conf
  fi
  phase tls ensure_tls_cert
  phase mon start_mon
  phase osd-mkfs mkfs_osd
  phase osd start_osd
  phase osd-up wait_osd_up
  phase mgr start_mgr
  phase users ensure_users
  phase rgw start_rgw
  phase rgw-ready wait_rgw
  touch "$DIR/.complete"
  log "up: RGW at $RGW_URL"
  print_env | tee "$DIR/env"
}

cmd_env() {
  running client.rgw.gw || { echo "ceph-rgw: not running (run: $0 up)" >&2; exit 1; }
  print_env
}

cmd_down() {
  [[ -d $RUN ]] || { log "nothing to stop ($DIR absent)"; return 0; }
  stop_daemon client.rgw.gw
  stop_daemon mgr.x
  stop_daemon osd.0
  stop_daemon mon.a
}

cmd_status() {
  local n pid rc=0
  for n in mon.a mgr.x osd.0 client.rgw.gw; do
    if pid=$(daemon_pid "$n"); then
      printf '%-14s running  pid %-7s rss %s kB\n' "$n" "$pid" "$(awk '/VmRSS/{print $2}' "/proc/$pid/status")"
    else
      printf '%-14s stopped\n' "$n"; [[ $n == mgr.x ]] || rc=1
    fi
  done
  if running mon.a; then "${CEPH[@]}" -s || true; fi
  if curl -s -o /dev/null -m 2 "$RGW_URL/"; then echo "rgw: answering at $RGW_URL"; else echo "rgw: not answering at $RGW_URL"; rc=1; fi
  return $rc
}

cmd_purge() {
  [[ ! -d $DIR || -e $DIR/fsid || -z $(ls -A "$DIR") ]] || die "$DIR holds no ceph-rgw cluster; not removing it"
  cmd_down; rm -rf "$DIR"; log "removed $DIR"
}

case ${1:-} in
  up) cmd_up ;;
  env) cmd_env ;;
  down) cmd_down ;;
  status) cmd_status ;;
  purge) cmd_purge ;;
  *) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
