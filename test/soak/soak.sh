#!/bin/sh
# soak.sh builds portmux and the soak program, then runs the soak against
# that portmux on loopback. Bounded: SOAK_DURATION (default 3m) of load
# phases plus at most about a minute of start, rest and shutdown; the soak
# program's own watchdog ends it (and the portmux it started) past that.
#
#   ./test/soak/soak.sh                     # 3 minutes
#   SOAK_DURATION=10m ./test/soak/soak.sh   # longer; see docs/soak.md for every knob
#   SOAK_PORTMUX=/path/to/portmux ./test/soak/soak.sh   # skip building portmux
#
# Exit status: 0 if every criterion passed, 1 if one failed, 2 on a setup error.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/portmux-soak-build.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
cd "$root"
if [ -z "${SOAK_PORTMUX:-}" ]; then
	echo "soak.sh: building portmux from $root"
	go build -o "$work/portmux" ./cmd/portmux
	SOAK_PORTMUX="$work/portmux"
fi
go build -o "$work/soak" ./test/soak
echo "soak.sh: running the soak (SOAK_DURATION=${SOAK_DURATION:-3m})"
status=0
SOAK_PORTMUX="$SOAK_PORTMUX" "$work/soak" "$@" || status=$?
exit "$status"
