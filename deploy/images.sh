#!/usr/bin/env bash
# Builds every image the compose stack needs, offline when no container registry answers.
#
#   bash deploy/images.sh            images for `docker-compose up` (+ locust), and the env file
#   bash deploy/images.sh --no-serve the third-party images only (not segint-serve)
#
# Each third-party image is named by a variable that defaults to its upstream name:
#   PYTHON_IMAGE      python:3.11-slim-bookworm   (the Dockerfile's base)
#   REDIS_IMAGE       redis:7.2-alpine
#   HAPROXY_IMAGE     haproxy:2.6
#   PROMETHEUS_IMAGE  prom/prometheus:v2.53.4
#   LOCUST_IMAGE      locustio/locust:2.47.0
# For each one: the image is used as it is when the engine has it or can pull it (so on a
# machine with a registry nothing changes); otherwise a stand-in is built from Debian packages
# (or PyPI for locust) on a Debian base made by debootstrap, tagged segint-local/<name>, and
# used instead. The names chosen are written to $IMAGES_ENV (default .stack/images.env), which
# `make stack-up` passes to docker-compose with --env-file. Then segint-serve:cpu is built
# from ./Dockerfile (target serve) on whichever Python base was chosen.
#
# Other variables: DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian),
# BASE_IMAGE (segint-local/debian:bookworm, the debootstrap base), CA_BUNDLE (the host's CA
# bundle copied into the Python base: containers reach PyPI over TLS only with it),
# PULL_TIMEOUT_S (30), DOCKER (the client; default: Debian's 20.10 client in /usr/bin when
# present, since a newer client first on PATH needs the buildx plugin for BuildKit).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/deploy/images
DOCKER=${DOCKER:-$([[ -x /usr/bin/docker ]] && echo /usr/bin/docker || echo docker)}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim-bookworm}
REDIS_IMAGE=${REDIS_IMAGE:-redis:7.2-alpine}
HAPROXY_IMAGE=${HAPROXY_IMAGE:-haproxy:2.6}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-prom/prometheus:v2.53.4}
LOCUST_IMAGE=${LOCUST_IMAGE:-locustio/locust:2.47.0}
LOCUST_VERSION=${LOCUST_VERSION:-2.47.0}
BASE_IMAGE=${BASE_IMAGE:-segint-local/debian:bookworm}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PULL_TIMEOUT_S=${PULL_TIMEOUT_S:-30}
IMAGES_ENV=${IMAGES_ENV:-$ROOT/.stack/images.env}
SERVE=1
case "${1:-}" in
  "") ;;
  --no-serve) SERVE=0 ;;
  *) echo "images: usage: deploy/images.sh [--no-serve]" >&2; exit 2 ;;
esac

die() { echo "images: $*" >&2; exit 1; }
log() { echo "images: $*" >&2; }
have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
"$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  die "no Docker engine answers ($DOCKER); start one (dockerd &) first"
export DOCKER_BUILDKIT=1

# After the first pull that fails no further pulls are tried (pick runs in a subshell, so the
# answer is kept in a file).
NO_REGISTRY=$(mktemp)
rm -f "$NO_REGISTRY"
trap 'rm -f "$NO_REGISTRY"' EXIT
pulled() {
  [[ -e $NO_REGISTRY ]] && return 1
  timeout "$PULL_TIMEOUT_S" "$DOCKER" pull -q "$1" >/dev/null 2>&1 && return 0
  touch "$NO_REGISTRY"
  log "cannot pull $1 (no registry answers); using stand-ins built from Debian"
  return 1
}

# A Debian root file system from debootstrap, imported as an image.
debian_base() {
  have "$BASE_IMAGE" && return
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  [[ $(id -u) -eq 0 ]] || die "debootstrap needs root to build $BASE_IMAGE"
  local dir
  dir=$(mktemp -d)
  log "debootstrap --variant=minbase $DEBIAN_SUITE ($DEBIAN_MIRROR) -> $BASE_IMAGE"
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$dir" "$DEBIAN_MIRROR" >"$dir.log" 2>&1 ||
    { tail -n 20 "$dir.log" >&2; rm -rf "$dir" "$dir.log"; die "debootstrap failed"; }
  # Keep the image small: no apt package lists or caches (every stand-in runs apt-get update).
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
  tar -C "$dir" -c . | "$DOCKER" import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$dir" "$dir.log"
}

# Builds deploy/images/<name>.Dockerfile as segint-local/<name>:<tag>; prints that name.
standin() {
  local name=$1 tag=$2 ctx
  shift 2
  ctx=$(mktemp -d)
  cp "$HERE/$name.Dockerfile" "$ctx/Dockerfile"
  [[ $name == redis ]] && cp "$HERE/redis-entrypoint.sh" "$ctx/"
  if [[ $name == python ]]; then
    [[ -r $CA_BUNDLE ]] || die "CA bundle $CA_BUNDLE not readable (set CA_BUNDLE)"
    cp "$CA_BUNDLE" "$ctx/host-ca-bundle.crt"
  fi
  log "building segint-local/$name:$tag"
  "$DOCKER" build -q -t "segint-local/$name:$tag" "$@" "$ctx" >/dev/null ||
    { rm -rf "$ctx"; die "building segint-local/$name:$tag failed"; }
  rm -rf "$ctx"
  echo "segint-local/$name:$tag"
}

# Prints the image to use for upstream name $1: the upstream image if present or pullable,
# else the stand-in built by `standin "${@:2}"`.
pick() {
  local upstream=$1
  shift
  if have "$upstream" || pulled "$upstream"; then
    echo "$upstream"
    return
  fi
  debian_base
  standin "$@"
}

t0=$SECONDS
python=$(pick "$PYTHON_IMAGE" python 3.11-bookworm --build-arg "BASE_IMAGE=$BASE_IMAGE")
redis=$(pick "$REDIS_IMAGE" redis bookworm --build-arg "BASE_IMAGE=$BASE_IMAGE")
haproxy=$(pick "$HAPROXY_IMAGE" haproxy bookworm --build-arg "BASE_IMAGE=$BASE_IMAGE")
prometheus=$(pick "$PROMETHEUS_IMAGE" prometheus bookworm --build-arg "BASE_IMAGE=$BASE_IMAGE")
locust=$(pick "$LOCUST_IMAGE" locust "$LOCUST_VERSION" \
  --build-arg "PYTHON_IMAGE=$python" --build-arg "LOCUST_VERSION=$LOCUST_VERSION")
mkdir -p "$(dirname "$IMAGES_ENV")"
cat >"$IMAGES_ENV" <<EOF
# Written by deploy/images.sh; read by docker-compose --env-file (make stack-up).
PYTHON_IMAGE=$python
REDIS_IMAGE=$redis
HAPROXY_IMAGE=$haproxy
PROMETHEUS_IMAGE=$prometheus
LOCUST_IMAGE=$locust
EOF
log "third-party images ready in $((SECONDS - t0)) s; names in $IMAGES_ENV"

if ((SERVE)); then
  t1=$SECONDS
  log "building segint-serve:cpu from Dockerfile (target serve) on $python"
  "$DOCKER" build -t segint-serve:cpu --target serve --build-arg "PYTHON_IMAGE=$python" \
    --build-arg ORT=cpu "$ROOT" >&2 || die "building segint-serve:cpu failed"
  log "segint-serve:cpu built in $((SECONDS - t1)) s"
fi

for image in "$python" "$redis" "$haproxy" "$prometheus" "$locust" segint-serve:cpu; do
  have "$image" && printf 'images: %-40s %s MB\n' "$image" \
    "$(("$("$DOCKER" image inspect -f '{{.Size}}' "$image")" / 1000000))" >&2
done
log "done in $((SECONDS - t0)) s"
