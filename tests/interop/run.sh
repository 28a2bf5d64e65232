#!/bin/sh
# Runs the engine interop suite (containerd, podman, Docker, containerd CRI)
# against one runtime binary and prints "ok/not ok <check>" lines and a
# closing "N passed, M failed" summary. Needs root.
#
#   tests/interop/run.sh                  # the repo's bin/cubo-runc (built if missing)
#   tests/interop/run.sh /usr/sbin/runc   # the same checks against runc
#   CUBO_INTEROP_ENGINES=podman,docker tests/interop/run.sh
set -eu
cd "$(dirname "$0")/../.."
if [ $# -gt 0 ]; then
	CUBO_INTEROP_RUNTIME=$1
	export CUBO_INTEROP_RUNTIME
fi
PATH=/usr/local/go/bin:$PATH:/usr/sbin:/sbin
export PATH
log=$(mktemp /tmp/cubo-interop-log.XXXXXX)
rc=0
go test -count=1 -timeout 15m -v ./tests/interop/ >"$log" 2>&1 || rc=$?
grep -E '^(ok|not ok|skip) |^# |^[0-9]+ passed' "$log" || true
if [ "$rc" -ne 0 ]; then
	echo "# full log: $log"
else
	rm -f "$log"
fi
exit "$rc"
