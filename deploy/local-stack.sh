#!/usr/bin/env bash
# The docker-compose topology as plain processes, for machines without a Docker engine:
# redis-server with AOF persistence, two uvicorn replicas of the service, HAProxy in front.
#
#   deploy/local-stack.sh up       start what is not running, wait until healthy
#   deploy/local-stack.sh status   one line per process
#   deploy/local-stack.sh down     stop everything this script started (its pid files)
#
# State (pid files, logs, the Redis AOF) lives in $STACK_DIR. Environment:
#   STACK_DIR          state folder                        (default .stack)
#   STACK_LB_PORT      HAProxy, where clients connect      (default 8080)
#   STACK_STATS_PORT   HAProxy's /metrics and /stats       (default 8404)
#   STACK_APP_PORTS    the two replicas' ports             (default "8001 8002")
#   STACK_REDIS_PORT   redis-server                        (default 6390)
#   STACK_FSYNC        appendfsync: always|everysec|no; "off" disables the AOF (default always)
#   STACK_WAIT_S       how long `up` waits for health     (default 120)
#   SEGINT_ARTIFACT_DIR  the exported model the replicas load (default artifacts/default)
#   SEGINT_*           any other service setting is passed through to the replicas
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=$(mkdir -p "${STACK_DIR:-$ROOT/.stack}" && cd "${STACK_DIR:-$ROOT/.stack}" && pwd)
LB_PORT=${STACK_LB_PORT:-8080}
STATS_PORT=${STACK_STATS_PORT:-8404}
read -r -a APP_PORTS <<<"${STACK_APP_PORTS:-8001 8002}"
REDIS_PORT=${STACK_REDIS_PORT:-6390}
FSYNC=${STACK_FSYNC:-always}
WAIT_S=${STACK_WAIT_S:-120}
VENV=${VENV:-$ROOT/.venv}
ARTIFACT_DIR=${SEGINT_ARTIFACT_DIR:-$ROOT/artifacts/default}
APP=service.app:create_app # how a replica's command line is recognised (pid files)

die() { echo "local-stack: $*" >&2; exit 2; }

[[ ${#APP_PORTS[@]} -eq 2 ]] || die "STACK_APP_PORTS must name two ports, got '${APP_PORTS[*]}'"
case "$FSYNC" in always | everysec | no | off) ;; *) die "STACK_FSYNC must be always|everysec|no|off, got '$FSYNC'" ;; esac

# A Debian package the stack needs: installed when we are root, else one clear line.
need() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null && return
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "local-stack: installing $pkg (apt-get)" >&2
    { apt-get install -y -qq "$pkg" || { apt-get update -qq && apt-get install -y -qq "$pkg"; }; } >/dev/null 2>&1 ||
      die "apt-get install $pkg failed"
    command -v "$cmd" >/dev/null || die "$pkg installed but $cmd is not on PATH"
  else
    die "$cmd is not installed; run: sudo apt-get install $pkg"
  fi
}

# 0 when GET url answers 200 within 2 s.
http_ok() {
  python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The pid in $STACK_DIR/<name>.pid when that process is alive and still runs <pattern>
# (guards against a stale pid file whose pid was reused by an unrelated process).
live_pid() {
  local file=$STACK_DIR/$1.pid pid
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2" || return 1
  echo "$pid"
}

# Starts "$@" in the background with its output in <name>.log and its pid in <name>.pid.
spawn() {
  local name=$1 port=$2
  shift 2
  if port_busy "$port"; then die "port $port ($name) is already in use by another process"; fi
  nohup "$@" >>"$STACK_DIR/$name.log" 2>&1 &
  echo $! >"$STACK_DIR/$name.pid"
}

start_redis() {
  live_pid redis redis-server >/dev/null && return
  need redis-server redis-server
  mkdir -p "$STACK_DIR/redis"
  local aof=(--appendonly yes --appendfsync "$FSYNC")
  [[ $FSYNC == off ]] && aof=(--appendonly no)
  spawn redis "$REDIS_PORT" redis-server "$ROOT/deploy/redis.conf" --port "$REDIS_PORT" \
    --bind 127.0.0.1 --dir "$STACK_DIR/redis" --daemonize no "${aof[@]}"
}

start_replica() {
  local i=$1 port=$2
  live_pid "replica$i" "$APP" >/dev/null && return
  # One ONNX Runtime thread and no spinning: two replicas, Redis, HAProxy and the load
  # generator share the machine's cores.
  (cd "$ROOT" && SEGINT_ARTIFACT_DIR=$ARTIFACT_DIR \
    SEGINT_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 \
    SEGINT_INTRA_OP_THREADS=${SEGINT_INTRA_OP_THREADS:-1} \
    SEGINT_ORT_SPINNING=${SEGINT_ORT_SPINNING:-false} \
    spawn "replica$i" "$port" "$VENV/bin/uvicorn" --factory "$APP" \
    --host 127.0.0.1 --port "$port" --workers 1 --no-access-log --timeout-graceful-shutdown 10)
}

start_lb() {
  live_pid haproxy haproxy >/dev/null && return
  need haproxy haproxy
  SEGINT_LB_BIND=127.0.0.1:$LB_PORT SEGINT_LB_STATS_BIND=127.0.0.1:$STATS_PORT \
    SEGINT_REPLICA_1=127.0.0.1:${APP_PORTS[0]} SEGINT_REPLICA_2=127.0.0.1:${APP_PORTS[1]} \
    spawn haproxy "$LB_PORT" haproxy -db -f "$ROOT/deploy/haproxy.cfg"
}

wait_healthy() {
  local deadline=$((SECONDS + WAIT_S)) url
  for url in "http://127.0.0.1:${APP_PORTS[0]}/readyz" "http://127.0.0.1:${APP_PORTS[1]}/readyz" \
    "http://127.0.0.1:$LB_PORT/healthz" "http://127.0.0.1:$STATS_PORT/stats"; do
    until http_ok "$url"; do
      if ((SECONDS >= deadline)); then
        status >&2 || true
        die "$url not healthy after ${WAIT_S}s (logs in $STACK_DIR)"
      fi
      sleep 0.5
    done
  done
  # HAProxy marks a replica up after 2 passing checks (2 s apart); wait for both.
  until python3 - "http://127.0.0.1:$STATS_PORT/stats;csv" <<'PY'
import csv, io, sys, urllib.request
rows = csv.DictReader(io.StringIO(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().lstrip("# ")))
up = [r for r in rows if r["pxname"] == "replicas" and r["svname"].startswith("replica") and r["status"] == "UP"]
sys.exit(0 if len(up) == 2 else 1)
PY
  do
    ((SECONDS < deadline)) || die "HAProxy does not see both replicas up after ${WAIT_S}s"
    sleep 0.5
  done
}

up() {
  # Checked first, so a stack that cannot serve starts nothing.
  [[ -x $VENV/bin/uvicorn ]] || die "$VENV/bin/uvicorn not found; run: make install"
  [[ -f $ARTIFACT_DIR/manifest.json ]] ||
    die "no exported model at $ARTIFACT_DIR (run \`make serve\` once, or set SEGINT_ARTIFACT_DIR)"
  start_redis
  until redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do
    live_pid redis redis-server >/dev/null || die "redis-server exited (see $STACK_DIR/redis.log)"
    sleep 0.1
  done
  start_replica 1 "${APP_PORTS[0]}"
  start_replica 2 "${APP_PORTS[1]}"
  start_lb
  wait_healthy
  echo "local-stack: up at http://127.0.0.1:$LB_PORT (replicas :${APP_PORTS[0]} :${APP_PORTS[1]}," \
    "redis :$REDIS_PORT, HAProxy stats :$STATS_PORT/stats; state in $STACK_DIR)"
}

stop() {
  local name=$1 pattern=$2 pid
  pid=$(live_pid "$name" "$pattern") || { rm -f "$STACK_DIR/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$STACK_DIR/$name.pid"
}

down() {
  # Front to back, so no request reaches a replica whose Redis is already gone.
  stop haproxy haproxy
  stop replica1 "$APP"
  stop replica2 "$APP"
  stop redis redis-server # SIGTERM: Redis flushes the AOF and exits cleanly
  echo "local-stack: down"
}

status() {
  local name pattern pid rc=0
  for entry in "redis:redis-server" "replica1:$APP" "replica2:$APP" \
    "haproxy:haproxy"; do
    name=${entry%%:*} pattern=${entry#*:}
    if pid=$(live_pid "$name" "$pattern"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: stopped"
      rc=1
    fi
  done
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: deploy/local-stack.sh up|down|status" ;;
esac
