#!/usr/bin/env bash
# The docker-compose stack, end to end, on a machine without a container registry.
#
#   deploy/stack.sh up       start the engine if none runs, build the images (deploy/images.sh),
#                            train + export artifacts/default if missing, compose up -d, and
#                            wait until every container is healthy and HAProxy serves
#   deploy/stack.sh down     remove the containers, networks and volumes of the project
#   deploy/stack.sh load     locust (its image) at the compose HAProxy: RATE, DURATION
#   deploy/stack.sh drill a|b|c|cluster   fault drills (deploy/drills.py), reports in reports/drills/
#   deploy/stack.sh test     up + smoke load + drills a and b + down (`make stack-test`)
#
# Environment: STACK_PROFILE=cluster adds the 6-node Redis Cluster and points the replicas at
# it; LB_PORT (18080) and PROMETHEUS_PORT (19090) are published on 127.0.0.1 only;
# STACK_WAIT_S (300) bounds every wait, STACK_ENGINE_WAIT_S (60) the engine's start; DOCKERD
# the engine (default: dockerd on PATH, else /usr/sbin/dockerd); RATE (10), DURATION (30s) for `load`; SEGINT_API_KEY
# (default: a random key kept in .stack/api-key).
# Fails loudly (exit 1, one line on stderr) when the engine cannot start: never skips.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DOCKER=${DOCKER:-$([[ -x /usr/bin/docker ]] && echo /usr/bin/docker || echo docker)}
COMPOSE_BIN=${COMPOSE_BIN:-docker-compose}
DOCKERD=${DOCKERD:-$(command -v dockerd || echo /usr/sbin/dockerd)}
ENGINE_WAIT_S=${STACK_ENGINE_WAIT_S:-60}
STATE=$ROOT/.stack
IMAGES_ENV=${IMAGES_ENV:-$STATE/images.env}
WAIT_S=${STACK_WAIT_S:-300}
PROJECT=${COMPOSE_PROJECT_NAME:-segint}
export LB_PORT=${LB_PORT:-18080} PROMETHEUS_PORT=${PROMETHEUS_PORT:-19090}
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1
VENV=${VENV:-$ROOT/.venv}
# The replicas require X-API-Key on /events/view; locust and the drills send it. Without
# SEGINT_API_KEY a random key is made once and kept in .stack/api-key. (An empty value would
# not mean "no key": the service would then want an empty X-API-Key, and refuse every event.)
if [[ -z ${SEGINT_API_KEY:-} ]]; then
  mkdir -p "$STATE"
  [[ -s $STATE/api-key ]] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/api-key")
  SEGINT_API_KEY=$(<"$STATE/api-key")
fi
export SEGINT_API_KEY
PROFILES=()
if [[ ${STACK_PROFILE:-} == cluster ]]; then
  PROFILES=(--profile cluster)
  export SEGINT_REDIS_URL=${SEGINT_REDIS_URL:-redis+cluster://redis-node-1:6379}
fi

die() { echo "stack: $*" >&2; exit 1; }
log() { echo "stack: $*" >&2; }

compose() {
  local env=()
  [[ -f $IMAGES_ENV ]] && env=(--env-file "$IMAGES_ENV")
  PATH=/usr/bin:$PATH "$COMPOSE_BIN" -p "$PROJECT" "${env[@]}" "$@"
}

engine() {
  "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 && return
  [[ -x $DOCKERD ]] ||
    die "no Docker engine answers and $DOCKERD is not installed (apt-get install docker.io docker-compose debootstrap)"
  [[ $(id -u) -eq 0 ]] || die "no Docker engine answers, and starting $DOCKERD needs root"
  mkdir -p "$STATE"
  log "starting $DOCKERD (log in $STATE/dockerd.log)"
  PATH=/usr/sbin:/usr/bin:$PATH nohup "$DOCKERD" >>"$STATE/dockerd.log" 2>&1 &
  local pid=$! deadline=$((SECONDS + ENGINE_WAIT_S))
  until "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "dockerd exited at start (see $STATE/dockerd.log)"
    ((SECONDS < deadline)) || die "dockerd did not answer within ${ENGINE_WAIT_S}s (see $STATE/dockerd.log)"
    sleep 1
  done
}

# Waits until every container of the project is healthy (or running, without a healthcheck;
# or exited 0, for one-shot jobs) and the load balancer answers /healthz on the host.
wait_healthy() {
  local deadline=$((SECONDS + WAIT_S)) ids id state pending
  while true; do
    pending=()
    ids=$(compose "${PROFILES[@]}" ps -q)
    for id in $ids; do
      state=$("$DOCKER" inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}}' "$id")
      read -r name status health code <<<"$state"
      case "$status/$health" in
        running/healthy | running/none) ;;
        exited/none) [[ $code == 0 ]] || die "$name exited with $code (docker logs ${name#/})" ;;
        *) pending+=("${name#/}:$status/$health") ;;
      esac
    done
    if ((${#pending[@]} == 0)) && curl -fsS -o /dev/null -m 2 "http://127.0.0.1:$LB_PORT/healthz"; then
      return
    fi
    ((SECONDS < deadline)) || { compose ps >&2; die "not healthy after ${WAIT_S}s: ${pending[*]:-lb /healthz}"; }
    sleep 2
  done
}

up() {
  engine
  bash deploy/images.sh
  SERVE_PREPARE_ONLY=1 SEGINT_ARTIFACT_DIR=artifacts/${SEGINT_MODEL_VERSION:-default} \
    bash deploy/serve.sh
  mkdir -p reports/load reports/drills
  local t0=$SECONDS
  # segint-serve:cpu was just built by images.sh from the same Dockerfile: no rebuild here.
  compose "${PROFILES[@]}" up -d --no-build
  wait_healthy
  log "up in $((SECONDS - t0)) s: http://127.0.0.1:$LB_PORT (Prometheus http://127.0.0.1:$PROMETHEUS_PORT)"
}

down() {
  if ! "$DOCKER" version >/dev/null 2>&1; then
    log "no Docker engine runs: nothing to remove"
    return
  fi
  compose --profile cluster --profile load --profile train down -v --remove-orphans
}

load() {
  local rate=${RATE:-10} duration=${DURATION:-30s} report
  report=${LOAD_REPORT:-reports/load/compose_rate${rate}_${duration}}
  mkdir -p "$(dirname "$report")"
  # As the caller's user, so the reports in the bind-mounted folder are theirs.
  compose --profile load run --rm -u "$(id -u):$(id -g)" locust \
    -f deploy/load/locustfile.py --headless --host http://lb:8080 --rate "$rate" \
    --run-time "$duration" --reset-stats --only-summary --csv "$report" --html "$report.html"
  log "load: reports in ${report}_summary.json, ${report}_stats.csv, $report.html"
}

drill() {
  [[ $# -ge 1 ]] || die "usage: deploy/stack.sh drill a|b|c|cluster [drill options]"
  "$VENV/bin/python" deploy/drills.py "$@"
}

stack_test() {
  local t0=$SECONDS rc=0
  up
  # Drills below the saturation rate (about 3-4 req/s here on 2 shared cores, see
  # deploy/README.md): past it, latency alone breaks any client timeout.
  { RATE=10 DURATION=30s LOAD_REPORT=reports/load/stack-test_smoke load &&
    drill a --rate 2 --events-rate 2 && drill b --rate 2 --events-rate 2; } || rc=$?
  down
  ((rc == 0)) || die "stack-test failed (exit $rc)"
  log "stack-test passed in $((SECONDS - t0)) s"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  load) load ;;
  drill) shift; drill "$@" ;;
  test) stack_test ;;
  engine) engine ;;
  *) echo "stack: usage: deploy/stack.sh up|down|load|drill|test" >&2; exit 2 ;;
esac
