#!/usr/bin/env bash
# HTTP reverse-proxy benchmark: portmux against the origin served directly,
# HAProxy and nginx, on loopback, in one run.
#
#   test/bench/http.sh                  # about 9 minutes with the defaults (10 with PROFILE=1)
#   ROUNDS=1 DURATION=5 test/bench/http.sh   # a quick look
#   PROFILE=1 test/bench/http.sh        # also perf-record portmux in each protocol
#
# Three protocols, each against four servers: the Go origin itself
# (test/bench/httpbackend, the "direct" reference), portmux, HAProxy and
# nginx, every proxy forwarding HTTP/1.1 over kept-alive connections to the
# same origin:
#   http   plain HTTP/1.1 keep-alive, wrk; portmux also once more with
#          log.level info (one access-log line per request) to show its cost
#   https  HTTP/1.1 over TLS terminated by the server, wrk
#   h2     HTTP/2 over TLS (ALPN h2), h2load with STREAMS streams per connection
# The rounds are interleaved (round 1 of every server, then round 2, ...), so
# that a slow period of a shared machine hits every server alike, and the
# median of the rounds is reported. Besides req/s and p99 latency, each run
# notes the CPU time the server's processes used per request, which is less
# sensitive than req/s to other load on the machine.
#
# Environment (defaults in brackets):
#   ROUNDS [3]  DURATION [10] seconds per run  WARMUP [2] seconds per server
#   CONNS [64]  STREAMS [10] (h2)  THREADS [2] (wrk and h2load)  BODY [64] bytes
#   LOGINFO [1] the extra portmux run with info logs   PROFILE [0]   KEEP [0] keep the temp dir
#   MAX_SECONDS [840] refuse settings whose estimated duration exceeds this
#
# Installs wrk, nghttp2-client (h2load), haproxy and nginx from Debian when
# missing (as root). Their system services are not used: a service the
# installation started is stopped and disabled; each server runs with its own
# config in a temp dir, on free loopback ports, and every process started here
# is stopped by its PID on exit. Writes test/bench/results/http-DATE.md (and
# raw outputs in test/bench/results/http-DATE/), and copies the table to
# test/bench/HTTP_RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}
THREADS=${THREADS:-2}
BODY=${BODY:-64}
LOGINFO=${LOGINFO:-1}
PROFILE=${PROFILE:-0}
KEEP=${KEEP:-0}
MAX_SECONDS=${MAX_SECONDS:-840}

die() { echo "http.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }
for v in ROUNDS DURATION WARMUP CONNS STREAMS THREADS BODY MAX_SECONDS; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((ROUNDS >= 1 && ROUNDS <= 20)) || die "ROUNDS must be 1 to 20"
((DURATION >= 1 && DURATION <= 120)) || die "DURATION must be 1 to 120 seconds"
((THREADS >= 1 && THREADS <= CONNS)) || die "THREADS must be 1 to CONNS"

# Runs per round: 4 servers x 3 protocols, plus portmux with info logs.
runs=$((12 + (LOGINFO == 1 ? 1 : 0)))
estimate=$((runs * (WARMUP + 2) + ROUNDS * runs * (DURATION + 2) + (PROFILE == 1 ? 3 * (DURATION + 4) : 0) + 60))
((estimate <= MAX_SECONDS)) || die "these settings would take about ${estimate}s, more than MAX_SECONDS=${MAX_SECONDS}"
log "estimated duration: ${estimate}s"

# portmux reads PORTMUX_* variables as config overrides: none of the caller's.
for v in $(compgen -e | grep '^PORTMUX_' || true); do unset "$v"; done

# --- tools -----------------------------------------------------------------
declare -A pkg_of=([wrk]=wrk [h2load]=nghttp2-client [haproxy]=haproxy [nginx]=nginx)
missing=()
for tool in wrk h2load haproxy nginx; do
	PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_of[$tool]}")
done
export PATH=$PATH:/usr/sbin
if ((${#missing[@]})); then
	[ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "missing ${missing[*]}: install them (apt-get install ${missing[*]})"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
		{ apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } ||
		die "could not install ${missing[*]}"
	# The packages may start their system-wide service; this benchmark runs
	# its own instances, so stop and disable what was just installed.
	for svc in haproxy nginx; do
		[[ " ${missing[*]} " == *" $svc "* ]] || continue
		if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
			systemctl disable --now "$svc" >/dev/null 2>&1 || true
		elif [ -x "/etc/init.d/$svc" ]; then
			if "/etc/init.d/$svc" status >/dev/null 2>&1; then "/etc/init.d/$svc" stop >/dev/null 2>&1 || true; fi
			command -v update-rc.d >/dev/null && update-rc.d "$svc" disable >/dev/null 2>&1 || true
		fi
	done
fi
for tool in wrk h2load haproxy nginx openssl curl go; do
	command -v "$tool" >/dev/null || die "$tool not found"
done

# --- processes and cleanup -------------------------------------------------
WORK=$(mktemp -d /tmp/portmux-bench-http.XXXXXX)
PIDS=()
cleanup() {
	local pid i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		pid=${PIDS[i]}
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$KEEP" = 1 ]; then echo "http.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback TCP port that no socket uses and that was not
# handed out yet, below the ephemeral range (where the clients' own ports
# could take it between the check and the bind).
declare -A taken=()
EPHEMERAL_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
((EPHEMERAL_LOW > 12000)) || EPHEMERAL_LOW=32768
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		[ -z "${taken[$p]:-}" ] || continue
		ss -Htan "sport = :$p" | grep -q . && continue
		taken[$p]=1
		echo "$p"
		return
	done
	die "no free port found"
}

# wait_http URL [curl options...]: until it answers 200, at most 10s.
wait_http() {
	local url=$1
	shift
	local pid
	for _ in $(seq 100); do
		[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" || true)" = 200 ] && return 0
		for pid in "${PIDS[@]}"; do
			kill -0 "$pid" 2>/dev/null || die "a server exited early (pid $pid): see the logs in $WORK (KEEP=1 keeps them)"
		done
		sleep 0.1
	done
	die "$url did not answer 200 within 10s"
}

P_ORIGIN=$(free_port) P_ORIGIN_TLS=$(free_port)
P_PM=$(free_port) P_PM_ADMIN=$(free_port) P_PMI=$(free_port) P_PMI_ADMIN=$(free_port)
P_HA=$(free_port) P_HA_TLS=$(free_port) P_NG=$(free_port) P_NG_TLS=$(free_port)

# --- build -----------------------------------------------------------------
log "building portmux and the origin"
go build -o "$WORK/portmux" ./cmd/portmux
go build -o "$WORK/origin" ./test/bench/httpbackend

# Self-signed ECDSA P-256 certificate (the key type portmux issues) for the
# origin, HAProxy and nginx.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	-keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"

# --- servers ---------------------------------------------------------------
"$WORK/origin" -listen "127.0.0.1:$P_ORIGIN" -tls-listen "127.0.0.1:$P_ORIGIN_TLS" \
	-cert "$WORK/cert.pem" -key "$WORK/key.pem" -size "$BODY" 2>"$WORK/origin.log" &
PIDS+=($!)
ORIGIN_PID=$!

portmux_config() { # level port admin-port storage
	cat <<EOF
listen: ["127.0.0.1:$2"]
admin: {listen: "127.0.0.1:$3"}
log: {level: $1}
tls: {ca: internal, storage: $4}
routes:
  - name: bench-tls
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://127.0.0.1:$P_ORIGIN
  - name: bench
    match: {protocol: http}
    to: http://127.0.0.1:$P_ORIGIN
EOF
}
portmux_config warn "$P_PM" "$P_PM_ADMIN" "$WORK/pm-certs" >"$WORK/portmux.yaml"
"$WORK/portmux" validate -c "$WORK/portmux.yaml" >/dev/null
"$WORK/portmux" run -c "$WORK/portmux.yaml" 2>"$WORK/portmux.log" &
PIDS+=($!)
PM_PID=$!
if [ "$LOGINFO" = 1 ]; then
	portmux_config info "$P_PMI" "$P_PMI_ADMIN" "$WORK/pmi-certs" >"$WORK/portmux-info.yaml"
	# >> (O_APPEND): the log can be emptied between runs.
	"$WORK/portmux" run -c "$WORK/portmux-info.yaml" 2>>"$WORK/portmux-info.log" &
	PIDS+=($!)
	PMI_PID=$!
fi

NCPU=$(nproc)
cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread $NCPU
  maxconn 4096
  tune.ssl.default-dh-param 2048
defaults
  mode http
  option http-keep-alive
  option forwardfor
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend plain
  bind 127.0.0.1:$P_HA
  default_backend origin
frontend tls
  bind 127.0.0.1:$P_HA_TLS ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
  default_backend origin
backend origin
  http-reuse always
  server origin 127.0.0.1:$P_ORIGIN
EOF
haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy config refused"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
HA_PID=$!

# nginx before 1.25.1 spells HTTP/2 as a listen parameter.
NGINX_VERSION=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
if [ "$(printf '%s\n1.25.1\n' "$NGINX_VERSION" | sort -V | head -1)" = 1.25.1 ]; then
	NG_H2_LISTEN="" NG_H2_ON="http2 on;"
else
	NG_H2_LISTEN=" http2" NG_H2_ON=""
fi
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
user root;
worker_processes $NCPU;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  keepalive_timeout 60s;
  keepalive_requests 100000000;   # the default 1000 would close wrk's connections
  upstream origin {
    server 127.0.0.1:$P_ORIGIN;
    keepalive 64;
    keepalive_requests 100000000;
  }
  server {
    listen 127.0.0.1:$P_NG;
    listen 127.0.0.1:$P_NG_TLS ssl$NG_H2_LISTEN;
    $NG_H2_ON
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
    }
  }
}
EOF
nginx -q -t -e "$WORK/nginx-error.log" -p "$WORK/nginx/" -c "$WORK/nginx.conf" || die "nginx config refused"
nginx -e "$WORK/nginx-error.log" -p "$WORK/nginx/" -c "$WORK/nginx.conf" -g 'daemon off;' >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
NG_PID=$!

log "waiting for the servers"
wait_http "http://127.0.0.1:$P_ORIGIN/"
wait_http "https://localhost:$P_ORIGIN_TLS/" --cacert "$WORK/cert.pem"
wait_http "http://127.0.0.1:$P_HA/"
wait_http "https://localhost:$P_HA_TLS/" --cacert "$WORK/cert.pem"
wait_http "http://127.0.0.1:$P_NG/"
wait_http "https://localhost:$P_NG_TLS/" --cacert "$WORK/cert.pem"
wait_http "http://127.0.0.1:$P_PM/"
# The internal CA's root, then a certificate for localhost: both are created
# by the running portmux (the first handshake may wait for the issuance).
for _ in $(seq 100); do
	"$WORK/portmux" trust -c "$WORK/portmux.yaml" >"$WORK/pm-root.pem" 2>/dev/null && break
	sleep 0.1
done
[ -s "$WORK/pm-root.pem" ] || die "portmux trust printed no root"
wait_http "https://localhost:$P_PM/" --cacert "$WORK/pm-root.pem"
if [ "$LOGINFO" = 1 ]; then wait_http "http://127.0.0.1:$P_PMI/"; fi

# Every server returns the origin's body, and speaks h2 when offered.
check() { # name url cacert
	local got proto=--http1.1
	[[ $2 == https:* ]] && proto=--http2
	got=$(curl -s --max-time 5 --cacert "$3" "$proto" -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "$2")
	case $2 in
	https:*) [ "$got" = "200 $BODY 2" ] || die "$1 ($2): got '$got', want '200 $BODY 2'" ;;
	*) [ "$got" = "200 $BODY 1.1" ] || die "$1 ($2): got '$got', want '200 $BODY 1.1'" ;;
	esac
}
for s in "origin $P_ORIGIN $P_ORIGIN_TLS cert.pem" "portmux $P_PM $P_PM pm-root.pem" \
	"haproxy $P_HA $P_HA_TLS cert.pem" "nginx $P_NG $P_NG_TLS cert.pem"; do
	set -- $s
	check "$1" "http://127.0.0.1:$2/" "$WORK/$4"
	check "$1" "https://localhost:$3/" "$WORK/$4"
done

# --- measuring -------------------------------------------------------------
STAMP=$(date -u +%Y%m%d-%H%M%S)
RESULTS=$ROOT/test/bench/results
RAW=$RESULTS/http-$STAMP
mkdir -p "$RAW"
TSV=$RAW/runs.tsv
printf 'round\tproto\tserver\treq_s\tp99_ms\terrors\trequests\tcpu_us_per_req\torigin_conns\n' >"$TSV"
CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID...: user+system ticks of the processes and their children
# (nginx's workers).
cpu_ticks() {
	local total=0 pid kids t p
	for pid in "$@"; do
		kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
		for p in $pid $kids; do
			t=$(sed 's/^.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}') || t=0
			total=$((total + ${t:-0}))
		done
	done
	echo "$total"
}

declare -A URL PIDOF
URL[http/direct]=http://127.0.0.1:$P_ORIGIN/
URL[http/portmux]=http://127.0.0.1:$P_PM/
URL[http/portmux-info]=http://127.0.0.1:${P_PMI}/
URL[http/haproxy]=http://127.0.0.1:$P_HA/
URL[http/nginx]=http://127.0.0.1:$P_NG/
for p in https h2; do
	URL[$p/direct]=https://localhost:$P_ORIGIN_TLS/
	URL[$p/portmux]=https://localhost:$P_PM/
	URL[$p/haproxy]=https://localhost:$P_HA_TLS/
	URL[$p/nginx]=https://localhost:$P_NG_TLS/
done
PIDOF[direct]=$ORIGIN_PID PIDOF[portmux]=$PM_PID PIDOF[portmux-info]=${PMI_PID:-}
PIDOF[haproxy]=$HA_PID PIDOF[nginx]=$NG_PID
SERVERS_http="direct portmux haproxy nginx"
[ "$LOGINFO" = 1 ] && SERVERS_http="direct portmux portmux-info haproxy nginx"
SERVERS_https="direct portmux haproxy nginx"
SERVERS_h2="direct portmux haproxy nginx"

# to_ms VALUE: wrk's "1.23ms", "850.00us" or "1.02s" in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else print "nan" }'
}

# origin_conns: connections the origin has accepted so far (this query's included).
origin_conns() { curl -s --max-time 5 "http://127.0.0.1:$P_ORIGIN/_stats" | awk '$1 == "conns" {print $2}'; }

# measure PROTO SERVER SECONDS OUT: one run; prints "req_s p99_ms errors
# requests cpu_us origin_conns", the last being the connections the origin
# accepted during the run (for a proxy: how often it opened one upstream).
measure() {
	local proto=$1 server=$2 secs=$3 out=$4 url=${URL[$1/$2]} c0 c1 rps p99 errs reqs o0 o1
	o0=$(origin_conns)
	c0=$(cpu_ticks "${PIDOF[$server]}")
	if [ "$proto" = h2 ]; then
		# h2load reports no percentiles: p99 comes from its per-request log.
		timeout $((secs + 30)) h2load -c "$CONNS" -m "$STREAMS" -t "$THREADS" -D "$secs" \
			--log-file="$out.log" "$url" >"$out" 2>&1 || true
		c1=$(cpu_ticks "${PIDOF[$server]}")
		rps=$(awk '/^finished in/ {gsub(/,/, "", $4); print $4}' "$out")
		reqs=$(awk '/^requests:/ {print $8}' "$out")
		errs=$(awk '/^requests:/ {print $10 + $12 + $14} /^status codes:/ {print $5 + $7 + $9}' "$out" | awk '{s += $1} END {print s + 0}')
		p99=$(awk '{print $3}' "$out.log" | sort -n | awk '{v[NR] = $1} END {if (NR) printf "%.3f", v[int(NR * 0.99 + 0.999999)] / 1000; else print "nan"}')
		rm -f "$out.log"
	else
		timeout $((secs + 30)) wrk -t "$THREADS" -c "$CONNS" -d "${secs}s" --latency --timeout 5s "$url" >"$out" 2>&1 || true
		c1=$(cpu_ticks "${PIDOF[$server]}")
		rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
		reqs=$(awk '/requests in/ {print $1}' "$out")
		p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
		errs=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10} /Non-2xx/ {print $5}' "$out" | awk '{s += $1} END {print s + 0}')
	fi
	o1=$(origin_conns)
	[ -n "$rps" ] && [ -n "$reqs" ] || { echo "http.sh: no result from $proto/$server, see $out" >&2; rps=0 reqs=0; }
	local cpu_us=nan
	((reqs > 0)) && cpu_us=$(awk -v t=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
	echo "$rps $p99 $errs $reqs $cpu_us $(( ${o1:-0} - ${o0:-0} - 1 ))"
}

# Connections of the load generator close between runs: let them go.
settle() { sleep 1; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "warming up each server (${WARMUP}s, discarded)"
if ((WARMUP > 0)); then
	for proto in http https h2; do
		sv=SERVERS_$proto
		for server in ${!sv}; do
			measure "$proto" "$server" "$WARMUP" "$RAW/warmup-$proto-$server.txt" >/dev/null
			settle
		done
	done
fi

for round in $(seq "$ROUNDS"); do
	for proto in http https h2; do
		sv=SERVERS_$proto
		for server in ${!sv}; do
			out=$RAW/$proto-$server-r$round.txt
			[ "$server" = portmux-info ] && : >"$WORK/portmux-info.log"
			read -r rps p99 errs reqs cpu_us oconns < <(measure "$proto" "$server" "$DURATION" "$out")
			if [ "$server" = portmux-info ]; then
				echo "access-log lines written: $(grep -c '"msg":"request"' "$WORK/portmux-info.log" || true)" >>"$out"
				: >"$WORK/portmux-info.log"
			fi
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$proto" "$server" "$rps" "$p99" "$errs" "$reqs" "$cpu_us" "$oconns" >>"$TSV"
			printf 'round %d  %-5s %-13s %10.0f req/s  p99 %8s ms  cpu %6s us/req  origin conns %6s  errors %s\n' \
				"$round" "$proto" "$server" "$rps" "$p99" "$cpu_us" "$oconns" "$errs" >&2
			settle
		done
	done
done

if [ "$PROFILE" = 1 ]; then
	command -v perf >/dev/null || die "PROFILE=1 needs perf"
	# Sorts each sample (a call stack) into one bucket, the first that
	# matches: GC, TLS crypto, socket writes and reads, the scheduler and
	# other syscalls, allocation, then the code its innermost frame is in.
	cat >"$WORK/buckets.awk" <<'AWK'
BEGIN { RS = ""; FS = "\n" }
{
	s = $0; n++; b = ""
	if (s ~ /gcBgMarkWorker|gcAssistAlloc|bgsweep|bgscavenge|runtime\.gcStart|runtime\.sweepone|runtime\.gcMarkDone|runtime\.gcMarkTermination/) b = "GC: marking, assists, sweeping"
	else if (s ~ /crypto\//) b = "TLS: crypto and records"
	else if (s ~ /entry_SYSCALL/ && s ~ /syscall\.write|poll\.\(\*FD\)\.Write/) b = "syscalls: write(2)"
	else if (s ~ /entry_SYSCALL/ && s ~ /syscall\.read|poll\.\(\*FD\)\.Read/) b = "syscalls: read(2)"
	else if (s ~ /runtime\.schedule|runtime\.findRunnable|runtime\.park_m|runtime\.mcall|runtime\.futex|runtime\.netpoll|runtime\.notesleep|runtime\.stopm|runtime\.startm|runtime\.wakep|runtime\.ready|runtime\.goready|runtime\.usleep|runtime\.osyield|runtime\.gopark|runtime\.selectgo|runtime\.chansend|runtime\.chanrecv|runtime\.lock2|runtime\.unlock2|entry_SYSCALL|sysmon/) b = "Go scheduler: goroutine hand-offs, futex, netpoll, channels"
	else if (s ~ /runtime\.mallocgc|runtime\.newobject|runtime\.makeslice|runtime\.growslice|runtime\.makemap|runtime\.memclrNoHeapPointers/) b = "allocation (mallocgc)"
	else {
		split(s, f, "\n")
		for (i = 2; i in f; i++) {
			if (f[i] ~ /github\.com\/portmux/) { b = "portmux code"; break }
			if (f[i] ~ /httputil\./) { b = "httputil.ReverseProxy"; break }
			if (f[i] ~ /persistConn|Transport/) { b = "net/http Transport (upstream side)"; break }
			if (f[i] ~ /net\/http|net\/textproto|net\/url/) { b = "net/http server (parsing, headers, h2 framing)"; break }
		}
		if (b == "") b = "other"
	}
	c[b]++
}
END { for (k in c) printf "%5.1f%%  %s\n", 100 * c[k] / n, k | "sort -rn"; close("sort -rn"); printf "(%d samples)\n", n }
AWK
	for proto in http https h2; do
		log "profiling portmux ($proto)"
		perf record -q -F 499 -g -p "$PM_PID" -o "$RAW/perf-$proto.data" -- sleep $((DURATION - 1)) 2>/dev/null &
		perf_pid=$!
		measure "$proto" portmux "$DURATION" "$RAW/profile-$proto.txt" >/dev/null
		wait "$perf_pid" || true
		perf report -i "$RAW/perf-$proto.data" --no-children --stdio --sort symbol -g none --percent-limit 0.7 \
			>"$RAW/perf-$proto-flat.txt" 2>/dev/null || true
		perf report -i "$RAW/perf-$proto.data" --children --stdio --sort symbol -g none --percent-limit 3 \
			>"$RAW/perf-$proto-cumulative.txt" 2>/dev/null || true
		perf script -i "$RAW/perf-$proto.data" 2>/dev/null | awk -f "$WORK/buckets.awk" >"$RAW/perf-$proto-buckets.txt" || true
		rm -f "$RAW/perf-$proto.data"
	done
fi

curl -s "http://127.0.0.1:$P_PM_ADMIN/metrics" >"$RAW/portmux-metrics.txt" || true
cp "$WORK"/*.yaml "$WORK/haproxy.cfg" "$WORK/nginx.conf" "$RAW/"

# --- report ----------------------------------------------------------------
# median PROTO SERVER COLUMN
median() {
	awk -F'\t' -v p="$1" -v s="$2" -v c="$3" 'NR > 1 && $2 == p && $3 == s && $c != "nan" {print $c}' "$TSV" | sort -g |
		awk '{v[NR] = $1} END {if (!NR) {print "nan"; exit} if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
sum_errors() { awk -F'\t' -v p="$1" -v s="$2" 'NR > 1 && $2 == p && $3 == s {e += $6} END {print e + 0}' "$TSV"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 > 0 && a != "nan") printf "%.2f", a / b; else print "-"}'; }
# spread PROTO SERVER: "slowest-fastest" req/s over the rounds.
spread() {
	awk -F'\t' -v p="$1" -v s="$2" 'NR > 1 && $2 == p && $3 == s {if (n++ == 0 || $4 < lo) lo = $4; if ($4 > hi) hi = $4}
		END {if (n) printf "%.0f-%.0f", lo, hi; else print "-"}' "$TSV"
}
fmt_int() { awk -v v="$1" 'BEGIN {s = sprintf("%.0f", v); while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]([,]|$)/, ",&", s); print s}'; }

declare -A LABEL=([http]="HTTP/1.1" [https]="HTTPS (HTTP/1.1 over TLS)" [h2]="h2 over TLS")
declare -A SNAME=([direct]="origin, direct" [portmux]="**portmux**" [portmux-info]="portmux, info log" [haproxy]="HAProxy" [nginx]="nginx")
declare -A TARGET=([http]=0.80 [https]=0.75 [h2]=0.85)
declare -A TOOL=([http]=wrk [https]=wrk [h2]="h2load -m $STREAMS")
MD=$RESULTS/http-$STAMP.md
PMVER=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- . ':!test/bench/HTTP_RESULTS.md' 2>/dev/null || PMVER="$PMVER (with uncommitted changes)"
{
	echo "# portmux HTTP benchmark"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), portmux $PMVER, by \`test/bench/http.sh\`."
	echo "$CONNS connections, ${BODY}-byte responses, $ROUNDS interleaved rounds of ${DURATION}s per server (medians below;"
	echo "every run in \`results/http-$STAMP/runs.tsv\`), wrk/h2load with $THREADS threads, all on loopback."
	echo
	echo "| protocol | server | req/s | req/s, slowest-fastest round | p99 latency | server CPU per request | vs direct | new origin connections per run | errors |"
	echo "|---|---|--:|--:|--:|--:|--:|--:|--:|"
	for proto in http https h2; do
		sv=SERVERS_$proto
		d=$(median "$proto" direct 4)
		first=1
		for server in ${!sv}; do
			r=$(median "$proto" "$server" 4)
			if ((first)); then lab="${LABEL[$proto]} (${TOOL[$proto]})"; else lab=""; fi
			first=0
			printf '| %s | %s | %s | %s | %s ms | %s µs | %s | %s | %s |\n' "$lab" "${SNAME[$server]}" "$(fmt_int "$r")" \
				"$(spread "$proto" "$server")" "$(median "$proto" "$server" 5)" "$(median "$proto" "$server" 8)" \
				"$(ratio "$r" "$d")" "$(fmt_int "$(median "$proto" "$server" 9)")" "$(sum_errors "$proto" "$server")"
		done
	done
	echo
	echo "portmux against the targets (ratios of median req/s):"
	echo
	echo "| protocol | portmux / direct | target | HAProxy / direct | nginx / direct | portmux / HAProxy | portmux / nginx | ahead of every peer |"
	echo "|---|--:|--:|--:|--:|--:|--:|:-:|"
	for proto in http https h2; do
		d=$(median "$proto" direct 4)
		pm=$(median "$proto" portmux 4)
		ha=$(median "$proto" haproxy 4)
		ng=$(median "$proto" nginx 4)
		pr=$(ratio "$pm" "$d")
		met=$(awk -v r="$pr" -v t="${TARGET[$proto]}" 'BEGIN {print (r != "-" && r + 0 >= t) ? "met" : "missed"}')
		printf '| %s | %s | >= %s (%s) | %s | %s | %s | %s | %s |\n' "${LABEL[$proto]}" "$pr" "${TARGET[$proto]}" "$met" \
			"$(ratio "$ha" "$d")" "$(ratio "$ng" "$d")" "$(ratio "$pm" "$ha")" "$(ratio "$pm" "$ng")" \
			"$(awk -v a="$pm" -v b="$ha" -v c="$ng" 'BEGIN {print (a + 0 > b + 0 && a + 0 > c + 0) ? "yes" : "no"}')"
	done
	echo
	echo "Setup: the origin is \`test/bench/httpbackend\` (Go net/http; for HTTPS and h2 \"direct\" it terminates TLS"
	echo "itself). portmux: one L7 route \`to: http://127.0.0.1:ORIGIN\` for plain HTTP and a \`tls: terminate\` route"
	echo "(internal CA) for TLS, \`log.level: warn\` (no access log); \"info log\" is a second portmux with"
	echo "\`log.level: info\`, one JSON access-log line per request written to a file. HAProxy \`mode http\`,"
	echo "\`http-reuse always\`, \`option forwardfor\`, $NCPU threads. nginx $NGINX_VERSION, $NCPU workers, \`upstream { keepalive 64; }\`,"
	echo "\`proxy_http_version 1.1\`, \`Connection \"\"\`, X-Forwarded-For/Proto, no access log. All TLS servers use"
	echo "ECDSA P-256 certificates. \"server CPU per request\" is the user+system CPU time of the server's processes"
	echo "(nginx: master and workers) divided by the requests completed; for proxies it excludes the origin."
	echo
	echo "Machine: $NCPU CPUs ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -sr);"
	echo "load generator, origin and proxy share those CPUs. Go $(go env GOVERSION), $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'),"
	echo "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}'), $(h2load --version 2>&1 | head -1), $(openssl version | awk '{print $1, $2}')."
	echo "Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
	if [ "$PROFILE" = 1 ]; then
		echo
		echo "Where portmux's CPU time goes (\`perf record -g\` during one extra run per protocol, each sample"
		echo "sorted into the first bucket its call stack matches; \`results/http-$STAMP/perf-*\`):"
		for proto in http https h2; do
			[ -s "$RAW/perf-$proto-buckets.txt" ] || continue
			echo
			echo "${LABEL[$proto]}:"
			echo
			echo '```'
			cat "$RAW/perf-$proto-buckets.txt"
			echo '```'
		done
	fi
} >"$MD"
cp "$MD" "$ROOT/test/bench/HTTP_RESULTS.md"
echo
cat "$MD"
echo
echo "raw results: $RAW" >&2
