#!/usr/bin/env bash
# The Docker image end to end: build it, run it with a mounted config in front
# of backends on this host's loopback, and check what an operator relies on:
# routing through the container's port, a non-root process, a soft memory limit
# taken from the container's, SIGHUP reloads of
# the mounted file (a bad file refused), the HEALTHCHECK, and a drain on
# `docker stop` that finishes a live connection and exits 0.
#
#   test/docker.sh                       # from anywhere; needs docker, curl, python3
#
# Env:
#   PORTMUX_DOCKER_CONTEXT  build context (default: the repository root)
#   DOCKER_TEST_KEEP=1      keep the image, container and temp dir (debugging)
#
# If Docker is not reachable and ../shared/tools/docker-offline exists (next to
# the repository), it is started (`docker-offline up`) and its DOCKER_HOST used;
# registry images cannot be pulled there, so the legacy builder builds FROM the
# local Go image it provides. The container uses --network host so that it
# reaches the backends on 127.0.0.1 and the test reaches it there.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONTEXT=${PORTMUX_DOCKER_CONTEXT:-$ROOT}
OFFLINE=$ROOT/../shared/tools/docker-offline
RUN_ID=$$-$RANDOM
IMAGE=portmux-dockertest:$RUN_ID
CTR=portmux-dockertest-$RUN_ID
TMP=$(mktemp -d "${TMPDIR:-/tmp}/portmux-docker.XXXXXX")
chmod 755 "$TMP"
PIDS=()
RESULTS=()
FAILED=0

log() { printf '== %s\n' "$*" >&2; }
pass() { RESULTS+=("PASS  $1"); log "PASS: $1"; }
fail() { RESULTS+=("FAIL  $1"); FAILED=$((FAILED + 1)); log "FAIL: $1"; }
skip() { RESULTS+=("SKIP  $1"); log "SKIP: $1"; }
check() { # check NAME CMD...: PASS if CMD succeeds
  local name=$1; shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

summary() { # summary EXITCODE
  echo
  echo "==================== test/docker.sh summary ===================="
  local r
  for r in "${RESULTS[@]}"; do echo "  $r"; done
  if [ "$FAILED" -eq 0 ] && [ "${#RESULTS[@]}" -gt 0 ] && [ "$1" -eq 0 ]; then
    echo "RESULT: PASS (${#RESULTS[@]} checks)"
  else
    echo "RESULT: FAIL ($FAILED of ${#RESULTS[@]} checks failed)"
  fi
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "${DOCKER_OK:-}" ] && [ "${DOCKER_TEST_KEEP:-}" != 1 ]; then
    docker rm -f "$CTR" >/dev/null 2>&1
    docker rmi -f "$IMAGE" >/dev/null 2>&1
    # The legacy builder leaves the build stage behind as a dangling image.
    local img
    for img in $(comm -13 "$TMP/dangling.before" <(docker images -q --no-trunc -f dangling=true | sort) 2>/dev/null); do
      docker rmi "$img" >/dev/null 2>&1
    done
  fi
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if [ "${DOCKER_TEST_KEEP:-}" != 1 ]; then rm -rf "$TMP"; else log "kept $TMP, $IMAGE, $CTR"; fi
  summary "$rc"
  if [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ]; then echo "(aborted: exit $rc before all checks ran)"; fi
  if [ "$FAILED" -ne 0 ] && [ "$rc" -eq 0 ]; then rc=1; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS DESC CMD...: retry CMD every 0.5s until it succeeds (bounded).
wait_for() {
  local secs=$1 desc=$2; shift 2
  local i
  for ((i = 0; i < secs * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "timed out after ${secs}s waiting for: $desc"
  return 1
}

for tool in docker curl python3; do
  command -v "$tool" >/dev/null || { fail "required tool $tool is installed"; exit 1; }
done

# --- Docker ------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  if [ -x "$OFFLINE" ]; then
    log "docker not reachable: starting $OFFLINE up"
    line=$("$OFFLINE" up | grep '^export DOCKER_HOST=' | tail -1)
    export DOCKER_HOST=${line#export DOCKER_HOST=}
  fi
fi
if ! docker info >/dev/null 2>&1; then
  # CI sets DOCKER_TEST_OPTIONAL=1: a machine where no daemon can be
  # started is reported, not failed; every check of portmux still fails.
  if [ "${DOCKER_TEST_OPTIONAL:-}" = 1 ]; then skip "no Docker daemon could be started here"; exit 0; fi
  fail "docker daemon reachable (DOCKER_HOST=${DOCKER_HOST:-unset})"
  exit 1
fi
DOCKER_OK=1
export DOCKER_BUILDKIT=0

# --- Backends on this host's loopback ------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WEB1=$(free_port); WEB2=$(free_port); ECHO=$(free_port); PORT=$(free_port)
mkdir -p "$TMP/web1" "$TMP/web2"
echo "backend one" >"$TMP/web1/index.html"
echo "backend two" >"$TMP/web2/index.html"
python3 -m http.server --bind 127.0.0.1 --directory "$TMP/web1" "$WEB1" >"$TMP/web1.log" 2>&1 & PIDS+=($!)
python3 -m http.server --bind 127.0.0.1 --directory "$TMP/web2" "$WEB2" >"$TMP/web2.log" 2>&1 & PIDS+=($!)
cat >"$TMP/echo.py" <<'PY'
# TCP echo: every byte back; half-closes after the client does.
import socket, socketserver, sys
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            b = self.request.recv(65536)
            if not b:
                break
            self.request.sendall(b)
        self.request.shutdown(socket.SHUT_WR)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
PY
python3 "$TMP/echo.py" "$ECHO" >"$TMP/echo.log" 2>&1 & PIDS+=($!)
cat >"$TMP/client.py" <<'PY'
# client.py PORT NBYTES [READY GO]: send a non-protocol prefix and NBYTES of
# data, check the echo. With READY and GO: send half, create READY, wait (at
# most 120s) for GO to exist, then send the rest.
import hashlib, os, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
data = b"{docker-echo}\n" + os.urandom(n)
s = socket.create_connection(("127.0.0.1", port), timeout=120)
def roundtrip(chunk):
    s.sendall(chunk)
    got = b""
    while len(got) < len(chunk):
        b = s.recv(65536)
        if not b:
            sys.exit("connection closed after %d of %d echoed bytes" % (len(got), len(chunk)))
        got += b
    if hashlib.sha256(got).digest() != hashlib.sha256(chunk).digest():
        sys.exit("echo differs")
if len(sys.argv) > 3:
    roundtrip(data[: len(data) // 2])
    open(sys.argv[3], "w").close()
    for _ in range(1200):
        if os.path.exists(sys.argv[4]):
            break
        time.sleep(0.1)
    else:
        sys.exit("GO never came")
    roundtrip(data[len(data) // 2 :])
else:
    roundtrip(data)
s.shutdown(socket.SHUT_WR)
if s.recv(1) != b"":
    sys.exit("bytes after the echo; want EOF")
print("ok", len(data))
PY
wait_for 20 "web backends" curl -fsS "http://127.0.0.1:$WEB1/" || { fail "backends start"; exit 1; }
wait_for 20 "web backends" curl -fsS "http://127.0.0.1:$WEB2/" || { fail "backends start"; exit 1; }

# --- Config (mounted) ----------------------------------------------------------
# The Dockerfile's HEALTHCHECK asks 127.0.0.1:9090: use it if it is free here.
ADMIN=127.0.0.1:9090
if python3 -c 'import socket; socket.create_connection(("127.0.0.1",9090),1)' 2>/dev/null; then
  ADMIN=127.0.0.1:$(free_port)
  log "127.0.0.1:9090 is in use: admin on $ADMIN (the HEALTHCHECK cannot pass)"
fi
config() { # config WEBPORT [EXTRA]
  cat <<EOF
# test/docker.sh config, $(date +%s%N)
listen: [":$PORT"]
admin: {listen: "$ADMIN"}
shutdown_grace: 30s
log: {level: info, format: json}
routes:
  - name: web
    match: {protocol: http}
    to: http://127.0.0.1:$1
  - name: echo
    match: {protocol: unknown}
    to: 127.0.0.1:$ECHO
${2:-}
EOF
}
CFG=$TMP/portmux.yaml
config "$WEB1" >"$CFG"
chmod 644 "$CFG"

# --- Build and run -------------------------------------------------------------
docker images -q --no-trunc -f dangling=true | sort >"$TMP/dangling.before"
log "building $IMAGE from $CONTEXT"
if docker build -t "$IMAGE" "$CONTEXT" >"$TMP/build.log" 2>&1; then
  pass "image builds"
else
  tail -30 "$TMP/build.log" >&2
  fail "image builds"; exit 1
fi
# A memory limit, as an operator would set one: portmux derives its soft
# memory limit (GOMEMLIMIT) from it.
docker run -d --name "$CTR" --network host --memory 256m \
  -v "$CFG:/etc/portmux/portmux.yaml:ro" "$IMAGE" >/dev/null
logs() { docker logs "$CTR" 2>&1; }
count_logs() { logs | grep -c "$1" || true; }
if wait_for 60 "portmux listening" bash -c "docker logs $CTR 2>&1 | grep -q '\"msg\":\"listening\"'"; then
  pass "container starts and listens"
else
  logs | tail -20 >&2; fail "container starts and listens"; exit 1
fi

# --- Routing through the container's port ----------------------------------------
check "HTTP through the container reaches backend one" \
  bash -c "[ \"\$(curl -fsS --max-time 20 http://127.0.0.1:$PORT/)\" = 'backend one' ]"
check "unrecognised bytes through the container reach the echo backend intact" \
  python3 "$TMP/client.py" "$PORT" 1048576
check "admin /healthz answers 200" curl -fsS --max-time 10 -o /dev/null "http://$ADMIN/healthz"
check "admin /readyz answers 200" curl -fsS --max-time 10 -o /dev/null "http://$ADMIN/readyz"

# --- Non-root ----------------------------------------------------------------------
user=$(docker inspect -f '{{.Config.User}}' "$IMAGE")
check "image runs as a non-root user (Config.User=$user)" \
  bash -c "[ -n '$user' ] && [ '${user%%:*}' != 0 ] && [ '${user%%:*}' != root ]"
uids=$(docker top "$CTR" -eo pid,uid,args 2>&1 | awk 'NR > 1 && /portmux/ { print $2 }' | sort -u | tr '\n' ' ' || true)
check "the portmux process runs as uid 65532 (docker top: ${uids:-none})" bash -c "[ '$uids' = '65532 ' ]"

# --- Memory limit --------------------------------------------------------------------
# 90% of the container's 256 MiB, read from the cgroup (Prometheus prints the
# bytes as a float).
memlimit=$(curl -fsS --max-time 10 "http://$ADMIN/metrics" | awk '$1 == "go_gc_gomemlimit_bytes" { printf "%.0f", $2 }' || true)
check "soft memory limit is 90% of the container's 256 MiB (go_gc_gomemlimit_bytes ${memlimit:-none})" \
  test "${memlimit:-0}" = 241591910

# --- SIGHUP reload of the mounted file -------------------------------------------------
# A single-file bind mount follows the inode: rewrite the file in place (not
# by rename), or the container keeps seeing the old file.
reloaded=$(count_logs '"msg":"config reloaded"')
config "$WEB2" >"$CFG"
docker kill -s HUP "$CTR" >/dev/null
if wait_for 30 "config reloaded" bash -c "[ \$(docker logs $CTR 2>&1 | grep -c '\"msg\":\"config reloaded\"') -gt $reloaded ]"; then
  pass "docker kill -s HUP: config reloaded"
else
  fail "docker kill -s HUP: config reloaded"
fi
check "after the reload HTTP reaches backend two" \
  bash -c "[ \"\$(curl -fsS --max-time 20 http://127.0.0.1:$PORT/)\" = 'backend two' ]"
check "admin /routes shows the new target" \
  bash -c "curl -fsS --max-time 10 http://$ADMIN/routes | grep -q '127.0.0.1:$WEB2'"
refused=$(count_logs 'reload refused')
config "$WEB1" "  - name: broken
    match: {protocol: nonsense}
    to: 127.0.0.1:1" >"$CFG"
docker kill -s HUP "$CTR" >/dev/null
if wait_for 30 "reload refused" bash -c "[ \$(docker logs $CTR 2>&1 | grep -c 'reload refused') -gt $refused ]"; then
  pass "an invalid file is refused on SIGHUP"
else
  fail "an invalid file is refused on SIGHUP"
fi
check "after the refused reload HTTP still reaches backend two" \
  bash -c "[ \"\$(curl -fsS --max-time 20 http://127.0.0.1:$PORT/)\" = 'backend two' ]"
check "reload counters: ok 1, failed 1" bash -c "m=\$(curl -fsS --max-time 10 http://$ADMIN/metrics) &&
  grep -qx 'portmux_reloads_total{result=\"ok\"} 1' <<<\"\$m\" && grep -qx 'portmux_reloads_total{result=\"failed\"} 1' <<<\"\$m\""
config "$WEB2" >"$CFG" # leave a valid file behind

# --- HEALTHCHECK ------------------------------------------------------------------------
hc=$(docker inspect -f '{{if .Config.Healthcheck}}{{json .Config.Healthcheck.Test}}{{end}}' "$IMAGE")
if [ -z "$hc" ]; then
  skip "HEALTHCHECK (the Dockerfile has none)"
elif [ "$ADMIN" != 127.0.0.1:9090 ]; then
  skip "HEALTHCHECK healthy (127.0.0.1:9090 busy on this host)"
else
  log "HEALTHCHECK $hc: waiting for the first check (interval from the Dockerfile)"
  if wait_for 120 "health status healthy" bash -c "[ \"\$(docker inspect -f '{{.State.Health.Status}}' $CTR)\" = healthy ]"; then
    pass "HEALTHCHECK reports healthy"
  else
    docker inspect -f '{{json .State.Health}}' "$CTR" >&2
    fail "HEALTHCHECK reports healthy"
  fi
fi

# --- docker stop: drain ---------------------------------------------------------------------
python3 "$TMP/client.py" "$PORT" 4194304 "$TMP/ready" "$TMP/go" >"$TMP/client.log" 2>&1 &
CLIENT=$!
PIDS+=("$CLIENT")
wait_for 60 "drain client connected" test -e "$TMP/ready" || fail "drain client connects"
docker stop -t 60 "$CTR" >"$TMP/stop.log" 2>&1 &
STOPPER=$!
if wait_for 30 "draining log line" bash -c "docker logs $CTR 2>&1 | grep -q 'shutting down: draining'"; then
  pass "docker stop: portmux drains (log: shutting down: draining live connections)"
else
  fail "docker stop: portmux drains"
fi
check "while draining, new connections are refused" \
  wait_for 20 "listener closed" bash -c "! curl -sS --max-time 5 -o /dev/null http://127.0.0.1:$PORT/"
check "while draining, the container is still running" \
  bash -c "[ \"\$(docker inspect -f '{{.State.Running}}' $CTR)\" = true ]"
touch "$TMP/go"
if wait "$CLIENT"; then
  pass "the connection open at docker stop completed intact ($(cat "$TMP/client.log"))"
else
  fail "the connection open at docker stop completed intact ($(cat "$TMP/client.log"))"
fi
wait "$STOPPER" || true
check "portmux logged stopped" bash -c "docker logs $CTR 2>&1 | grep -q '\"msg\":\"stopped\"'"
code=$(docker inspect -f '{{.State.ExitCode}}' "$CTR")
check "container exit code 0 after docker stop (got $code)" test "$code" = 0
