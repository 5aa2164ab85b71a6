#!/usr/bin/env bash
# Run a command with a Redis server reachable at $SEGINT_TEST_REDIS_URL.
# Uses the server on 127.0.0.1:6379 when one answers, else starts a throwaway
# redis-server on a free port (removed again on exit).
set -euo pipefail
port=${SEGINT_TEST_REDIS_PORT:-6379}
ping() { python3 - "$1" <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5)
    s.sendall(b"PING\r\n")
    ok = s.recv(16).startswith(b"+PONG")
except OSError:
    ok = False
sys.exit(0 if ok else 1)
PY
}
if ping "$port"; then
  export SEGINT_TEST_REDIS_URL=${SEGINT_TEST_REDIS_URL:-redis://127.0.0.1:$port/15}
  exec "$@"
fi
if ! command -v redis-server >/dev/null; then
  echo "with-redis: no Redis answers on :$port and redis-server is not installed (apt-get install redis-server)" >&2
  exit 2
fi
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no --daemonize no >"$dir/redis.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do ping "$port" && break; sleep 0.1; done
echo "with-redis: started throwaway redis-server on 127.0.0.1:$port" >&2
export SEGINT_TEST_REDIS_URL=redis://127.0.0.1:$port/15
"$@"
