#!/usr/bin/env bash
# portmux's L4 benchmark: portmux side by side with direct connections (no
# proxy), HAProxy in mode tcp (no splice, splice-auto, forced splice) and
# sslh-fork, all on loopback, in interleaved rounds.
#
# Figures: bulk throughput (1 and 8 connections, up and down), new
# connections per second (SSH prefix + echo, 32 concurrent), connect-to-
# first-byte latency (p50, p99), server-first (FTP) detection: how long
# after the proxy's wait for client bytes a silent client gets the server's
# greeting, memory and fds per idle relayed connection.
# Throughput, conn/s and latency are compared to direct round by round.
#
#   test/bench/l4.sh            run (as root, to install haproxy and sslh)
#   test/bench/l4.sh -h         the settings (environment variables)
#
# It writes test/bench/results/l4-<date>.md (and .tsv, the raw data; the
# directory is gitignored) and copies the report to test/bench/L4_RESULTS.md.
# Every process it starts is tracked by PID and stopped on exit; it never
# kills anything by name. Traffic stays on 127.0.0.1.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: test/bench/l4.sh

Settings (environment; defaults in brackets):
  L4_ROUNDS             interleaved rounds, target order rotated each round [3]
  L4_TARGETS            columns [direct portmux haproxy haproxy-splice-auto haproxy-splice sslh-fork]
  L4_TESTS              [bulk_up_1 bulk_down_1 bulk_up_8 bulk_down_8 connrate latency ftp_greeting idle]
  L4_BULK1_BYTES        bytes of a 1-connection bulk test [2147483648]
  L4_BULK8_BYTES        bytes per connection of an 8-connection bulk test [268435456]
  L4_CONNRATE_DURATION  [10s]        L4_CONCURRENCY  [32]
  L4_LATENCY_N          samples [2000]
  L4_GREETING_N         ftp_greeting samples, 32 in flight (about 10 s per proxy for 300) [300]
  L4_IDLE_N             idle connections held [2000]
  L4_PORTMUX_REV        build portmux from this git revision (git archive) rather than
                        the working tree, e.g. HEAD when the tree does not build [""]
  L4_PROFILE            1: after the rounds, profile portmux (a pprof build made with
                        go build -overlay; the measured binary is the plain one) [1]
  L4_INSTALL            1: apt-get install haproxy sslh when missing [1]
  L4_MAX_SECONDS        no test starts after this many seconds; the report is partial [1500]
  L4_NOTE               a line for the report, e.g. what else ran on the machine [""]
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; "") ;; *) usage >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH=$ROOT/test/bench
RESULTS=$BENCH/results

ROUNDS=${L4_ROUNDS:-3}
TARGETS=${L4_TARGETS:-"direct portmux haproxy haproxy-splice-auto haproxy-splice sslh-fork"}
TESTS=${L4_TESTS:-"bulk_up_1 bulk_down_1 bulk_up_8 bulk_down_8 connrate latency ftp_greeting idle"}
BULK1_BYTES=${L4_BULK1_BYTES:-2147483648}
BULK8_BYTES=${L4_BULK8_BYTES:-268435456}
CONNRATE_DURATION=${L4_CONNRATE_DURATION:-10s}
CONCURRENCY=${L4_CONCURRENCY:-32}
LATENCY_N=${L4_LATENCY_N:-2000}
GREETING_N=${L4_GREETING_N:-300}
IDLE_N=${L4_IDLE_N:-2000}
PORTMUX_REV=${L4_PORTMUX_REV:-}
PROFILE=${L4_PROFILE:-1}
INSTALL=${L4_INSTALL:-1}
MAX_SECONDS=${L4_MAX_SECONDS:-1500}
NOTE=${L4_NOTE:-}
PREFIX='SSH-2.0-bench\r\n'
# SILENCE is how long every proxy waits for a client's first bytes before it
# routes the client as silent (server-first, FTP) to the greet backend:
# portmux's default sniff_timeout, HAProxy's inspect-delay, sslh's -t.
SILENCE=1s

STAMP=$(date +%Y%m%d-%H%M%S)
WORK=$(mktemp -d /tmp/portmux-l4.XXXXXX)
L4=$WORK/l4load
CLK=$(getconf CLK_TCK)
RAW=$RESULTS/l4-$STAMP.tsv
REPORT=$RESULTS/l4-$STAMP.md
FAILURES=$WORK/failures.txt
ROUNDLOG=$WORK/rounds.txt
: >"$FAILURES"
: >"$ROUNDLOG"

log() { printf '[l4 %s %4ds] %s\n' "$(date +%H:%M:%S)" "$SECONDS" "$*" >&2; }

# ---- processes: every one started here is a direct child, tracked by PID ----

STARTED=() # PIDs of the processes this script started and has not stopped
LAST=      # PID of the last process started

# start LOG CMD...: run CMD in the background, output to LOG.
start() {
	local out=$1
	shift
	"$@" >"$out" 2>&1 &
	LAST=$!
	STARTED+=("$LAST")
}

# ours PID: the process exists and is our child (not a recycled PID).
ours() {
	[ -r "/proc/$1/stat" ] && [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]
}

# descendants PID: the processes below PID (sslh-fork: a listener process,
# then one per connection), deepest last.
descendants() {
	ps -eo pid=,ppid= | awk -v root="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END {
			q[1] = root; head = 1; tail = 1
			while (head <= tail) {
				n = split(kids[q[head++]], k, " ")
				for (i = 1; i <= n; i++) { print k[i]; q[++tail] = k[i] }
			}
		}'
}

alive() { # alive PID...: some of them still runs (zombies do not count)
	local list
	list=$(echo "$@" | tr -s ' ' ',')
	ps -o stat= -p "$list" 2>/dev/null | grep -q '^[^Z]'
}

# interrupt PID: SIGINT (perf and strace print their counts on it), wait up
# to 10 s, then stop.
interrupt() {
	local i
	if ours "$1"; then
		kill -INT "$1" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			alive "$1" || break
			sleep 0.1
		done
	fi
	stop "$1"
}

# stop PID: TERM the process and its descendants, KILL whatever is left
# after 5 s, reap it and forget it.
stop() {
	local pid=$1 all i keep=() p
	if ours "$pid"; then
		all="$(descendants "$pid") $pid"
		# shellcheck disable=SC2086
		kill -TERM $all 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			# shellcheck disable=SC2086
			alive $all || break
			sleep 0.1
		done
		# shellcheck disable=SC2086
		alive $all && kill -KILL $all 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	for p in "${STARTED[@]}"; do
		[ "$p" = "$pid" ] || keep+=("$p")
	done
	STARTED=("${keep[@]}")
}

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${STARTED[@]}"; do
		stop "$p"
	done
	if [ "$rc" -ne 0 ] && [ -d "$WORK" ]; then
		mkdir -p "$RESULTS/l4-$STAMP-logs"
		cp "$WORK"/*.log "$WORK"/*.out "$WORK"/*.cfg "$WORK"/*.yaml "$RESULTS/l4-$STAMP-logs/" 2>/dev/null || true
		log "failed (exit $rc); logs kept in $RESULTS/l4-$STAMP-logs"
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- setup ----

install_packages() {
	local need=()
	command -v haproxy >/dev/null || need+=(haproxy)
	command -v sslh-fork >/dev/null || command -v sslh >/dev/null || need+=(sslh)
	[ ${#need[@]} -eq 0 ] && return
	if [ "$INSTALL" != 1 ] || [ "$(id -u)" != 0 ]; then
		log "missing ${need[*]}: install them (apt-get install -y haproxy sslh) or run as root"
		exit 1
	fi
	log "apt-get install ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -o DPkg::Lock::Timeout=300 "${need[@]}" >"$WORK/apt.log" 2>&1 ||
		{ apt-get update -o DPkg::Lock::Timeout=300 >>"$WORK/apt.log" 2>&1 &&
			apt-get install -y -o DPkg::Lock::Timeout=300 "${need[@]}" >>"$WORK/apt.log" 2>&1; }
	# The packages' own services are not wanted: stop and disable them if
	# the installation started them (Docker images forbid it already).
	local svc
	for svc in haproxy sslh; do
		if [ -d /run/systemd/system ]; then
			systemctl disable --now "$svc" >/dev/null 2>&1 || true
		elif [ -x "/etc/init.d/$svc" ]; then
			if "/etc/init.d/$svc" status >/dev/null 2>&1; then
				log "stopping the $svc service the package started"
				"/etc/init.d/$svc" stop >/dev/null 2>&1 || true
			fi
			update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
	done
}

build() {
	local src=$ROOT
	if [ -n "$PORTMUX_REV" ]; then
		src=$WORK/src
		mkdir -p "$src"
		git -C "$ROOT" archive "$PORTMUX_REV" | tar -x -C "$src"
		PORTMUX_DESC="commit $(git -C "$ROOT" rev-parse --short "$PORTMUX_REV") (git archive of $PORTMUX_REV)"
	else
		PORTMUX_DESC="working tree at $(git -C "$ROOT" rev-parse --short HEAD)"
		if [ -n "$(git -C "$ROOT" status --porcelain -- . ':!test/bench' 2>/dev/null)" ]; then
			PORTMUX_DESC="$PORTMUX_DESC, with uncommitted changes"
		fi
	fi
	PORTMUX_SRC=$src
	log "building portmux ($PORTMUX_DESC) and l4load"
	(cd "$src" && go build -o "$WORK/portmux" ./cmd/portmux) || {
		log "portmux does not build from $src; try L4_PORTMUX_REV=HEAD"
		exit 1
	}
	(cd "$ROOT" && go build -o "$L4" ./test/bench/l4load)
}

SSLH=$(command -v sslh-fork || true)

# ---- targets ----

# portmux_config PORT: portmux's config, listening on PORT (sniff_timeout
# default, i.e. SILENCE).
portmux_config() {
	cat <<EOF
listen: ["127.0.0.1:$1"]
admin: {listen: ""}
log: {level: warn, format: json}
routes:
  - name: ssh
    match: {protocol: ssh}
    to: 127.0.0.1:$BACKEND_PORT
  - name: ftp
    match: {protocol: ftp}
    to: 127.0.0.1:$GREET_PORT
EOF
}

# start_target TARGET PORT TAG: start a proxy for TARGET on PORT; LAST is its
# PID. direct starts nothing (LAST is empty).
start_target() {
	local t=$1 port=$2 tag=$3 cfg
	LAST=
	case $t in
	direct) return ;;
	portmux)
		cfg=$WORK/portmux-$tag.yaml
		portmux_config "$port" >"$cfg"
		start "$WORK/portmux-$tag.log" "$WORK/portmux" run -c "$cfg"
		;;
	haproxy*)
		local opts=""
		case $t in
		haproxy-splice-auto) opts="    option splice-auto" ;;
		haproxy-splice) opts=$'    option splice-request\n    option splice-response' ;;
		esac
		cfg=$WORK/$t-$tag.cfg
		cat >"$cfg" <<EOF
global
    maxconn 7000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
$opts
frontend fe
    bind 127.0.0.1:$port
    tcp-request inspect-delay $SILENCE
    tcp-request content accept if { req.payload(0,4) -m str SSH- }
    use_backend ssh if { req.payload(0,4) -m str SSH- }
    use_backend greet if !{ req.len gt 0 }
backend ssh
    server backend 127.0.0.1:$BACKEND_PORT
backend greet
    server greet 127.0.0.1:$GREET_PORT
EOF
		start "$WORK/$t-$tag.log" haproxy -f "$cfg" -db
		;;
	sslh-fork)
		# --on-timeout names a protocol, not an address: the greet backend
		# is given as tinc's (nothing here speaks tinc).
		start "$WORK/sslh-$tag.log" "$SSLH" -f -n -p "127.0.0.1:$port" --ssh "127.0.0.1:$BACKEND_PORT" \
			--tinc "127.0.0.1:$GREET_PORT" --on-timeout tinc -t "${SILENCE%s}"
		;;
	*)
		log "unknown target $t"
		exit 1
		;;
	esac
	local pid=$LAST
	if ! "$L4" wait -addr "127.0.0.1:$port" -timeout 15s ||
		! "$L4" latency -addr "127.0.0.1:$port" -n 3 -warmup 0 -prefix "$PREFIX" >/dev/null; then
		log "$t does not relay on port $port; its log:"
		tail -n 20 "$WORK"/*"$tag".log >&2 || true
		exit 1
	fi
	LAST=$pid
}

# ---- measurements ----

kv() { # kv LINE KEY: the value of KEY=value in a RESULT line
	sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1" | head -1
}

record() { # record ROUND TEST TARGET METRIC VALUE (nothing if VALUE is empty)
	if [ -n "$5" ]; then
		printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RAW"
	fi
}

cpu_ms() { # cpu_ms PID: CPU time of a proxy (and its children)
	if [ -n "$1" ]; then kv "$("$L4" pstat -pid "$1" -clk "$CLK")" cpu_ms; fi
}

# run_test ROUND TEST TARGET: one measurement against a long-lived proxy.
run_test() {
	local r=$1 test=$2 t=$3 addr=127.0.0.1:${PORT[$3]} pid=${PID[$3]:-} out c0 c1 m
	local cmd=()
	case $test in
	bulk_up_1) cmd=(bulk -addr "$addr" -dir up -conns 1 -bytes "$BULK1_BYTES") ;;
	bulk_down_1) cmd=(bulk -addr "$addr" -dir down -conns 1 -bytes "$BULK1_BYTES") ;;
	bulk_up_8) cmd=(bulk -addr "$addr" -dir up -conns 8 -bytes "$BULK8_BYTES") ;;
	bulk_down_8) cmd=(bulk -addr "$addr" -dir down -conns 8 -bytes "$BULK8_BYTES") ;;
	connrate) cmd=(connrate -addr "$addr" -concurrency "$CONCURRENCY" -duration "$CONNRATE_DURATION" -prefix "$PREFIX") ;;
	latency) cmd=(latency -addr "$addr" -n "$LATENCY_N" -prefix "$PREFIX") ;;
	ftp_greeting)
		if [ "$t" = direct ]; then
			cmd=(greeting -addr "127.0.0.1:$GREET_PORT" -n "$GREETING_N" -silence 0)
		else
			cmd=(greeting -addr "$addr" -n "$GREETING_N" -silence "$SILENCE")
		fi
		;;
	esac
	# sslh-fork's per-connection processes are reaped with SA_NOCLDWAIT:
	# their CPU time is accounted nowhere once they exit. Not measured.
	if [ "$t" = sslh-fork ]; then pid=; fi
	c0=$(cpu_ms "$pid")
	if ! out=$("$L4" "${cmd[@]}" 2>"$WORK/client.err"); then
		log "FAILED round $r $test $t: $(tail -1 "$WORK/client.err")"
		echo "round $r, $test, $t: $(tail -1 "$WORK/client.err")" >>"$FAILURES"
		return
	fi
	c1=$(cpu_ms "$pid")
	out=$(grep '^RESULT' <<<"$out" | head -1)
	log "round $r $test $t: ${out#RESULT }"
	case $test in
	bulk_*) for m in mbps bytes secs first_done_secs last_done_secs; do record "$r" "$test" "$t" $m "$(kv "$out" $m)"; done ;;
	connrate) for m in cps conns errors slow_over_500ms; do record "$r" "$test" "$t" $m "$(kv "$out" $m)"; done ;;
	latency) for m in p50_us p90_us p99_us max_us conns errors; do record "$r" "$test" "$t" $m "$(kv "$out" $m)"; done ;;
	ftp_greeting) for m in p50_ms p90_ms p99_ms max_ms over_p50_ms over_p90_ms over_p99_ms over_max_ms n errors silence_ms; do record "$r" "$test" "$t" $m "$(kv "$out" $m)"; done ;;
	esac
	if [ -n "$pid" ]; then
		record "$r" "$test" "$t" cpu_ms "$((c1 - c0))"
	fi
}

# idle_test ROUND TARGET: memory and fds per idle relayed connection, on a
# fresh proxy process (a long-lived one would reuse what earlier tests
# allocated and freed).
idle_test() {
	local r=$1 t=$2 port=${IPORT[$2]} addr pid ipid before after opened i
	[ "$t" = direct ] && return
	addr=127.0.0.1:$port
	start_target "$t" "$port" "idle$r"
	pid=$LAST
	"$L4" latency -addr "$addr" -n 100 -warmup 0 -prefix "$PREFIX" >/dev/null # first connections: lazy init
	sleep 1
	before=$("$L4" pstat -pid "$pid" -clk "$CLK")
	start "$WORK/idle-$t-$r.out" "$L4" idle -addr "$addr" -n "$IDLE_N" -prefix "$PREFIX" -hold 300s
	ipid=$LAST
	for ((i = 0; i < 600; i++)); do # up to 120 s
		grep -q '^READY' "$WORK/idle-$t-$r.out" 2>/dev/null && break
		alive "$ipid" || break
		sleep 0.2
	done
	if ! grep -q '^READY' "$WORK/idle-$t-$r.out"; then
		log "FAILED round $r idle $t: $(tail -2 "$WORK/idle-$t-$r.out")"
		echo "round $r, idle, $t: connections not opened" >>"$FAILURES"
		stop "$ipid"
		stop "$pid"
		return
	fi
	sleep 2 # let the proxy settle (sslh children, lazy frees)
	after=$("$L4" pstat -pid "$pid" -clk "$CLK")
	opened=$(kv "$(grep '^RESULT' "$WORK/idle-$t-$r.out")" opened)
	stop "$ipid"
	stop "$pid"
	if [ "${opened:-0}" -lt 1 ]; then
		echo "round $r, idle, $t: no connection opened" >>"$FAILURES"
		return
	fi
	local pss rss fds
	pss=$(awk -v a="$(kv "$after" pss_kb)" -v b="$(kv "$before" pss_kb)" -v n="$opened" 'BEGIN { printf "%.2f", (a - b) / n }')
	rss=$(awk -v a="$(kv "$after" rss_kb)" -v b="$(kv "$before" rss_kb)" -v n="$opened" 'BEGIN { printf "%.2f", (a - b) / n }')
	fds=$(awk -v a="$(kv "$after" fds)" -v b="$(kv "$before" fds)" -v n="$opened" 'BEGIN { printf "%.2f", (a - b) / n }')
	log "round $r idle $t: $opened conns: PSS $pss KiB/conn, RSS $rss KiB/conn, $fds fds/conn (before: ${before#RESULT }; after: ${after#RESULT })"
	record "$r" idle "$t" pss_kib "$pss"
	record "$r" idle "$t" rss_kib "$rss"
	record "$r" idle "$t" fds "$fds"
	record "$r" idle "$t" opened "$opened"
}

# busy_pct SECONDS: CPU use of the whole machine over SECONDS, in percent
# of all cores (what else runs while we do not).
busy_pct() {
	local a b
	a=$(head -1 /proc/stat)
	sleep "$1"
	b=$(head -1 /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN {
		split(a, x, " "); split(b, y, " "); tot = 0
		for (i = 2; i <= 9; i++) tot += y[i] - x[i] # user .. steal (guest is inside user)
		idle = (y[5] - x[5]) + (y[6] - x[6])
		printf "%.0f", (tot > 0 ? 100 * (tot - idle) / tot : 0) }'
}

top_procs() { # the five busiest processes (CPU over their lifetime)
	ps -eo pcpu=,comm= --sort=-pcpu | head -5 | awk '{ printf "%s %s%%; ", $2, $1 }'
}

# ---- profile (portmux only, a separate build) ----

profile_portmux() {
	local dir=$WORK/profile over dbg port pid ipid m0 m1 p0 p1 i
	mkdir -p "$dir"
	cat >"$dir/zz_l4pprof.go" <<'EOF'
package main

// Added by test/bench/l4.sh through go build -overlay, never committed:
// pprof and expvar on $L4_PPROF_ADDR, for the benchmark's profile step.

import (
	_ "expvar"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	addr := os.Getenv("L4_PPROF_ADDR")
	if addr == "" {
		return
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		panic(err)
	}
	go http.Serve(ln, nil)
}
EOF
	printf '{"Replace": {"%s": "%s"}}\n' "$PORTMUX_SRC/cmd/portmux/zz_l4pprof.go" "$dir/zz_l4pprof.go" >"$dir/overlay.json"
	if ! (cd "$PORTMUX_SRC" && go build -overlay "$dir/overlay.json" -o "$WORK/portmux-pprof" ./cmd/portmux); then
		log "profile: the pprof build failed; skipped"
		return
	fi
	port=$PROFILE_PORT
	dbg=$DEBUG_PORT
	portmux_config "$port" >"$WORK/portmux-profile.yaml"
	L4_PPROF_ADDR=127.0.0.1:$dbg start "$WORK/portmux-profile.log" "$WORK/portmux-pprof" run -c "$WORK/portmux-profile.yaml"
	pid=$LAST
	"$L4" wait -addr "127.0.0.1:$port" -timeout 15s
	"$L4" wait -addr "127.0.0.1:$dbg" -timeout 15s
	"$L4" latency -addr "127.0.0.1:$port" -n 100 -warmup 0 -prefix "$PREFIX" >/dev/null
	sleep 1
	m0=$("$L4" memstats -url "http://127.0.0.1:$dbg")
	p0=$("$L4" pstat -pid "$pid" -clk "$CLK")
	start "$dir/idle.out" "$L4" idle -addr "127.0.0.1:$port" -n "$IDLE_N" -prefix "$PREFIX" -hold 300s
	ipid=$LAST
	for ((i = 0; i < 600; i++)); do
		grep -q '^READY' "$dir/idle.out" 2>/dev/null && break
		alive "$ipid" || break
		sleep 0.2
	done
	sleep 2
	m1=$("$L4" memstats -url "http://127.0.0.1:$dbg")
	p1=$("$L4" pstat -pid "$pid" -clk "$CLK")
	"$L4" fetch -url "http://127.0.0.1:$dbg/debug/pprof/goroutine?debug=1" -o "$dir/goroutines.txt" || true
	"$L4" fetch -url "http://127.0.0.1:$dbg/debug/pprof/heap" -o "$dir/heap.pb.gz" || true
	stop "$ipid"
	local n
	n=$(kv "$(grep '^RESULT' "$dir/idle.out")" opened)
	n=${n:-0}

	# CPU: a profile over a bulk download (8 conns) and one over the conn/s test.
	"$L4" fetch -url "http://127.0.0.1:$dbg/debug/pprof/profile?seconds=4" -o "$dir/cpu-bulk.pb.gz" -timeout 30s &
	local fpid=$!
	sleep 0.2
	"$L4" bulk -addr "127.0.0.1:$port" -dir down -conns 8 -bytes "$BULK8_BYTES" >"$dir/bulk.out" 2>&1 || true
	"$L4" bulk -addr "127.0.0.1:$port" -dir up -conns 1 -bytes "$BULK1_BYTES" >>"$dir/bulk.out" 2>&1 || true
	wait "$fpid" || true
	"$L4" fetch -url "http://127.0.0.1:$dbg/debug/pprof/profile?seconds=4" -o "$dir/cpu-connrate.pb.gz" -timeout 30s &
	fpid=$!
	sleep 0.2
	"$L4" connrate -addr "127.0.0.1:$port" -concurrency "$CONCURRENCY" -duration 4s -prefix "$PREFIX" >"$dir/connrate.out" 2>&1 || true
	wait "$fpid" || true
	stop "$pid"

	{
		echo "## Profile of portmux (a separate build with pprof, same config)"
		echo
		if [ "$n" -gt 0 ]; then
			awk -v n="$n" -v m0="$m0" -v m1="$m1" -v p0="$p0" -v p1="$p1" '
				function v(s, k,   a) { if (match(s, " " k "=[^ ]*")) { a = substr(s, RSTART + length(k) + 2, RLENGTH - length(k) - 2); return a + 0 } return 0 }
				BEGIN {
					printf "%d idle relayed connections, per connection (Go runtime, after a forced GC):\n\n", n
					print "| | per connection |"
					print "|---|---:|"
					printf "| goroutines | %.2f |\n", (v(m1, "goroutines") - v(m0, "goroutines")) / n
					printf "| goroutine stacks (StackInuse) | %.2f KiB |\n", (v(m1, "stack_inuse") - v(m0, "stack_inuse")) / n / 1024
					printf "| heap in use (HeapInuse) | %.2f KiB |\n", (v(m1, "heap_inuse") - v(m0, "heap_inuse")) / n / 1024
					printf "| heap live objects (HeapAlloc) | %.2f KiB |\n", (v(m1, "heap_alloc") - v(m0, "heap_alloc")) / n / 1024
					printf "| span metadata (MSpanInuse) | %.2f KiB |\n", (v(m1, "mspan_inuse") - v(m0, "mspan_inuse")) / n / 1024
					printf "| runtime Sys (all mapped by Go) | %.2f KiB |\n", (v(m1, "sys") - v(m0, "sys")) / n / 1024
					printf "| process PSS | %.2f KiB |\n", (v(p1, "pss_kb") - v(p0, "pss_kb")) / n
					printf "| process fds | %.2f |\n", (v(p1, "fds") - v(p0, "fds")) / n
				}'
			echo
		fi
		if [ -s "$dir/goroutines.txt" ]; then
			echo "Goroutines holding the idle connections (goroutine profile, groups of more than 100):"
			echo
			echo '```'
			awk -F'\t' '/^[0-9]+ @/ { split($0, h, " "); want = (h[1] > 100); if (want) print "--- " h[1] " goroutines"; n = 0; next }
				want && /^#/ && n < 10 { fn = $3; sub(/\+0x[0-9a-f]+$/, "", fn); m = split($4, pth, "/"); print "    " fn "  " pth[m]; n++ }' "$dir/goroutines.txt" | head -60
			echo '```'
			echo
		fi
		if [ -s "$dir/heap.pb.gz" ]; then
			echo "Heap in use with the idle connections held (top 12, inuse_space):"
			echo
			echo '```'
			go tool pprof -top -nodecount=12 -sample_index=inuse_space "$dir/heap.pb.gz" 2>/dev/null | sed -n '/flat%/,$p' | head -14
			echo '```'
			echo
		fi
		local f label
		for f in bulk connrate; do
			[ -s "$dir/cpu-$f.pb.gz" ] || continue
			case $f in
			bulk) label="bulk download (8 conns) then upload (1 conn): $(grep -c RESULT "$dir/bulk.out") runs; $(grep RESULT "$dir/bulk.out" | sed 's/.*mbps=\([^ ]*\).*/\1 MB\/s/' | paste -sd, -)" ;;
			connrate) label="conn/s test: $(kv "$(grep RESULT "$dir/connrate.out")" cps) conn/s" ;;
			esac
			echo "CPU profile, $label (top 20 by cumulative time, 4 s):"
			echo
			echo '```'
			go tool pprof -top -cum -nodecount=20 "$dir/cpu-$f.pb.gz" 2>/dev/null | sed -n '/flat%/,$p' | head -22
			echo '```'
			echo
		done
	} >"$WORK/profile.md"
}

# ---- syscalls per connection (perf stat, strace -c) ----

# syscall_profile TARGET PID PORT: syscalls, context switches and CPU time
# of the proxy per connection over sequential echo connections (perf stat),
# and which syscalls (strace -c: it slows the proxy down, the counts stay).
syscall_profile() {
	local t=$1 pid=$2 addr=127.0.0.1:$3 f=$WORK/sys-$1
	"$L4" latency -addr "$addr" -n 100 -warmup 0 -prefix "$PREFIX" >/dev/null
	if command -v perf >/dev/null; then
		start "$f.perf.log" perf stat -e raw_syscalls:sys_enter,context-switches,task-clock -p "$pid" -o "$f.perf"
		local perfpid=$LAST
		sleep 0.5
		"$L4" latency -addr "$addr" -n 1000 -warmup 0 -prefix "$PREFIX" >/dev/null || true
		sleep 0.2
		interrupt "$perfpid"
	fi
	if command -v strace >/dev/null; then
		start "$f.strace.log" strace -f -c -S calls -p "$pid" -o "$f.strace"
		local stpid=$LAST
		sleep 1
		"$L4" latency -addr "$addr" -n 300 -warmup 0 -prefix "$PREFIX" >/dev/null || true
		sleep 0.3
		interrupt "$stpid"
	fi
}

# syscall_report TARGET...: the markdown of what syscall_profile measured.
syscall_report() {
	local t have=()
	for t in "$@"; do
		[ -s "$WORK/sys-$t.perf" ] && have+=("$t")
	done
	if [ ${#have[@]} -gt 0 ]; then
		echo "### Syscalls per connection (perf stat on the proxy, 1000 sequential echo connections)"
		echo
		printf '| per connection |'
		printf ' %s |' "${have[@]}"
		printf '\n|---|'
		printf -- '---:|%.0s' "${have[@]}"
		echo
		local ev label
		for ev in raw_syscalls:sys_enter context-switches task-clock; do
			case $ev in
			raw_syscalls:sys_enter) label="syscalls" ;;
			context-switches) label="context switches" ;;
			task-clock) label="CPU time (µs, perf task-clock)" ;;
			esac
			printf '| %s |' "$label"
			for t in "${have[@]}"; do
				awk -v ev="$ev" '$2 == ev || ($2 == "msec" && $3 == ev) {
					v = $1; gsub(",", "", v); if (ev == "task-clock") v *= 1000
					printf " %.1f |", v / 1000; found = 1 }
					END { if (!found) printf " — |" }' "$WORK/sys-$t.perf"
			done
			echo
		done
		echo
	fi
	have=()
	for t in "$@"; do
		[ -s "$WORK/sys-$t.strace" ] && have+=("$t")
	done
	if [ ${#have[@]} -gt 0 ]; then
		echo "### Which syscalls, per connection (strace -c -f on the proxy, 300 sequential echo connections)"
		echo
		echo "Calls per connection (in parentheses: of them failed, e.g. EAGAIN). strace slows the proxy down, so the Go runtime's own calls (futex, nanosleep, epoll_pwait) are inflated relative to an unobserved run; the network calls are not."
		echo
		printf '| syscall |'
		printf ' %s |' "${have[@]}"
		printf '\n|---|'
		printf -- '---:|%.0s' "${have[@]}"
		echo
		local files=()
		for t in "${have[@]}"; do files+=("$WORK/sys-$t.strace"); done
		awk -v n=300 -v k="${#have[@]}" '
			FNR == 1 { f++ }
			$1 ~ /^[0-9.]+$/ && NF >= 5 {
				name = $NF; calls[name, f] = $4; errs[name, f] = (NF == 6 ? $5 : 0)
				if (!(name in seen)) { seen[name] = 1; order[++m] = name }
				if (f == 1) first[name] = $4
			}
			END {
				for (i = 1; i <= m; i++) {
					name = order[i]
					if (name == "total") continue
					printf "| %s |", name
					for (j = 1; j <= k; j++) {
						if ((name, j) in calls) {
							printf " %.2f", calls[name, j] / n
							if (errs[name, j] / n >= 0.005) printf " (%.2f)", errs[name, j] / n
							printf " |"
						} else printf " — |"
					}
					printf "\n"
				}
				printf "| **total** |"
				for (j = 1; j <= k; j++) printf " %s |", ((("total", j) in calls) ? sprintf("**%.1f**", calls["total", j] / n) : "—")
				printf "\n"
			}' "${files[@]}"
		echo
	fi
}

# ---- main ----

mkdir -p "$RESULTS"
install_packages
SSLH=$(command -v sslh-fork || command -v sslh)
build

read -r -a P <<<"$("$L4" freeports -n 20)"
BACKEND_PORT=${P[0]}
PROFILE_PORT=${P[1]}
DEBUG_PORT=${P[2]}
GREET_PORT=${P[3]}
declare -A PORT=() IPORT=() PID=()
i=4
for t in $TARGETS; do
	PORT[$t]=${P[$i]}
	IPORT[$t]=${P[$((i + 1))]}
	i=$((i + 2))
done
PORT[direct]=$BACKEND_PORT

printf '# round\ttest\ttarget\tmetric\tvalue\n' >"$RAW"
BUSY0=$(busy_pct 3)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
TOP0=$(top_procs)
log "machine: $(nproc) cores, load $LOAD0, busy ${BUSY0}% over 3 s before starting; busiest: $TOP0"

start "$WORK/backend.log" "$L4" serve -listen "127.0.0.1:$BACKEND_PORT" -greet-listen "127.0.0.1:$GREET_PORT"
BACKEND_PID=$LAST
"$L4" wait -addr "127.0.0.1:$BACKEND_PORT"
"$L4" wait -addr "127.0.0.1:$GREET_PORT"
for t in $TARGETS; do
	start_target "$t" "${PORT[$t]}" main
	PID[$t]=$LAST
done
"$SSLH" -V 2>&1 | head -1 >"$WORK/sslh-version.txt" || true

read -r -a TA <<<"$TARGETS"
STOPPED_EARLY=
for ((r = 1; r <= ROUNDS; r++)); do
	off=$(((r - 1) % ${#TA[@]}))
	order=("${TA[@]:off}" "${TA[@]:0:off}")
	busy=$(busy_pct 2)
	l0=$(cut -d' ' -f1-3 /proc/loadavg)
	log "round $r/$ROUNDS: order ${order[*]}; machine busy ${busy}% over 2 s, load $l0"
	for test in $TESTS; do
		for t in "${order[@]}"; do
			if [ "$SECONDS" -ge "$MAX_SECONDS" ]; then
				STOPPED_EARLY="stopped after $SECONDS s (L4_MAX_SECONDS=$MAX_SECONDS) in round $r, before $test/$t"
				log "$STOPPED_EARLY"
				break 3
			fi
			if [ "$test" = idle ]; then
				idle_test "$r" "$t"
			else
				run_test "$r" "$test" "$t"
			fi
			sleep 0.3
		done
	done
	echo "| $r | ${order[*]} | $busy% | $l0 | $(cut -d' ' -f1-3 /proc/loadavg) |" >>"$ROUNDLOG"
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
TOP1=$(top_procs)
SYS_TARGETS=()
if [ -z "$STOPPED_EARLY" ]; then
	for t in portmux haproxy; do
		if [ -n "${PID[$t]:-}" ]; then
			log "syscalls per connection: $t"
			syscall_profile "$t" "${PID[$t]}" "${PORT[$t]}"
			SYS_TARGETS+=("$t")
		fi
	done
fi
for t in $TARGETS; do
	if [ -n "${PID[$t]:-}" ]; then
		stop "${PID[$t]}"
	fi
done

: >"$WORK/profile.md"
if [ "$PROFILE" = 1 ] && [ -z "$STOPPED_EARLY" ] && [[ " $TARGETS " == *" portmux "* ]]; then
	log "profiling portmux"
	profile_portmux
fi
stop "$BACKEND_PID"

# ---- report ----

{
	echo "# portmux L4 benchmark, $(date '+%Y-%m-%d %H:%M %Z')"
	echo
	echo "Produced by \`test/bench/l4.sh\` (load tool: \`test/bench/l4load\`); raw data in \`test/bench/results/l4-$STAMP.tsv\` (not committed)."
	echo
	echo "- Machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)."
	echo "- Load: busy ${BUSY0}% of all cores over 3 s before starting; load average ${LOAD0} before, ${LOAD1} after. Busiest processes before: ${TOP0}after: ${TOP1}"
	echo "- Run time: $SECONDS s, build and profile included."
	[ -n "$NOTE" ] && echo "- Note: $NOTE"
	[ -n "$STOPPED_EARLY" ] && echo "- **Partial run**: $STOPPED_EARLY."
	echo "- portmux: $PORTMUX_DESC, $(go version | cut -d' ' -f3), GOMAXPROCS default; config: one \`protocol: ssh\` route to the backend and one \`protocol: ftp\` route to the greet backend, \`sniff_timeout\` and \`idle_timeout\` at their defaults (\`sniff_timeout\`: $SILENCE), \`log: {level: warn}\` (no per-connection log line; at \`info\` each connection writes one JSON line), admin listener off."
	echo "- HAProxy: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3), \`mode tcp\`, \`tcp-request inspect-delay $SILENCE\`, \`tcp-request content accept if { req.payload(0,4) -m str SSH- }\`, \`use_backend\` ssh on that, \`use_backend greet if !{ req.len gt 0 }\` (silent until the inspect-delay ends); threads default ($(nproc)); variants: no splice, \`option splice-auto\`, \`option splice-request\` + \`option splice-response\`."
	echo "- sslh: $(cat "$WORK/sslh-version.txt") (\`$(basename "$SSLH")\`, the forking build: one process per connection), \`-f -n -p 127.0.0.1:PORT --ssh 127.0.0.1:BACKEND --tinc 127.0.0.1:GREET --on-timeout tinc -t ${SILENCE%s}\` (silent clients go to the greet backend after ${SILENCE%s} s); it logs each connection to stderr (redirected to a file)."
	echo "- Tests: bulk $BULK1_BYTES bytes on 1 connection, $BULK8_BYTES bytes on each of 8; conn/s: $CONCURRENCY concurrent for $CONNRATE_DURATION, each connection sends \`SSH-2.0-bench\\r\\n\` + 64 bytes, reads the echo, closes; latency: $LATENCY_N sequential connections (after 50 unmeasured), time from connect() to the first echoed byte; ftp_greeting: $GREETING_N connections that send nothing, 32 in flight, starts spread evenly, time from connect() to the first byte of the greet backend's \`220\` line (direct: the greet backend itself); idle: $IDLE_N connections, each echoed its SSH line once, held on a fresh proxy process. $ROUNDS interleaved rounds: for each test, every target in turn, order rotated each round. The backend and the clients run on the same 2 cores as the proxy."
	echo
	echo "| round | order | machine busy before the round | load average at start | at end |"
	echo "|---|---|---:|---|---|"
	cat "$ROUNDLOG"
	echo
	"$L4" report -raw "$RAW" -targets "$TARGETS"
	if [ ${#SYS_TARGETS[@]} -gt 0 ]; then
		syscall_report "${SYS_TARGETS[@]}"
	fi
	if [ -s "$FAILURES" ]; then
		echo "### Failed measurements"
		echo
		sed 's/^/- /' "$FAILURES"
		echo
	fi
	cat "$WORK/profile.md"
} >"$REPORT"
cp "$REPORT" "$BENCH/L4_RESULTS.md"
cat "$REPORT"
log "report: $REPORT (copied to test/bench/L4_RESULTS.md)"
