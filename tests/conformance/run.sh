#!/bin/sh
# run.sh: the OCI runtime-tools validation suite against a runc-compatible runtime.
#
#   tests/conformance/run.sh [-o REPORT] [-t SECONDS] RUNTIME [TEST...]
#
# RUNTIME is the runtime binary (an absolute path or a name on PATH); TEST names select some of
# the validation programs (default: all of them). Must run as root.
#
# The suite is built from the runtime-tools version pinned in go.mod, with our module's
# requirement graph but through a scratch copy of go.mod (-modfile), so the suite's own
# dependencies never enter go.mod. Programs and their fixtures (runtimetest,
# rootfs-amd64.tar.gz) go to .conformance/bin; the TAP output of each program goes to
# .conformance/logs/<runtime>/<test>.tap.
#
# A test passes when the program exits 0 and its TAP output has no "not ok" line and no
# failure diagnostic: a YAML block with an "error" key under no test line, which is how the
# lifecycle programs (hooks, prestart, poststart, poststop...) report a failure, under a plan
# of "1..0". The "error" key matters: other programs print informational blocks (runtimetest's
# output) the same way. A few programs assert nothing and only speak up on failure
# (process_rlimits_fail prints no TAP and exits 1 if the runtime accepted the bad config), so
# for them a clean exit is the pass; the report marks them "no assertions". stderr goes to
# <test>.stderr, so that runtime messages cannot split a test line from its diagnostic.
#
# The report (Markdown) goes to docs/conformance.md when RUNTIME says it is cubo-runc, and to
# .conformance/conformance-<runtime>.md otherwise, so comparison runs with runc or crun never
# overwrite the project's record; -o chooses the file. A full run also leaves
# .conformance/results-<runtime>.txt, and every report shows the other runtimes' last full
# runs as extra columns: run `tests/conformance/run.sh runc` once, and `make conformance` then
# compares cubo-runc with runc test by test.
#
# Cleanup: each program makes its bundles with os.MkdirTemp, so they run with TMPDIR set to a
# scratch dir; after each program, containers whose bundle lies there are deleted with
# `RUNTIME delete --force` (never anyone else's, even under the shared default root), the test
# cgroups (cgrouptest, testdir) that did not exist before the run are removed, and the scratch
# dir is emptied.
set -u

usage() {
	echo "usage: $0 [-o REPORT] [-t SECONDS] RUNTIME [TEST...]" >&2
	exit 2
}

report=""
limit=120
while getopts o:t:h opt; do
	case $opt in
	o) report=$OPTARG ;;
	t) limit=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
arg=$1
runtime=$1
shift
selected=$*

if [ "$(id -u)" != 0 ]; then
	echo "$0: the validation suite must run as root" >&2
	exit 2
fi
case $runtime in
/*) ;;
*/*) runtime=$(cd "$(dirname "$runtime")" && pwd)/$(basename "$runtime") ;;
*) runtime=$(command -v "$runtime") || { echo "$0: $arg: not found" >&2; exit 2; } ;;
esac
if [ ! -x "$runtime" ]; then
	echo "$0: $runtime: not an executable file" >&2
	exit 2
fi

top=$(cd "$(dirname "$0")/../.." && pwd)
work=$top/.conformance
bin=$work/bin
name=$(basename "$runtime")
logs=$work/logs/$name
PATH=/usr/local/go/bin:$PATH
export PATH

version_line=$("$runtime" --version 2>/dev/null | head -n 1)
if [ -z "$report" ]; then
	case $version_line in
	"cubo-runc version"*) report=$top/docs/conformance.md ;;
	*) report=$work/conformance-$name.md ;;
	esac
fi

# One run at a time: runs share the programs in .conformance/bin and the host-wide test cgroups
# (/cgrouptest), which a concurrent run's cleanup would remove under the other's feet. The
# runtime never gets fd 9, so a container that outlives its test cannot hold the lock.
mkdir -p "$work"
exec 9>"$work/lock"
if ! flock -n 9; then
	echo "waiting for another run.sh to finish"
	flock 9
fi

# --- build ------------------------------------------------------------------------------------
rt=github.com/opencontainers/runtime-tools
cd "$top" || exit 2
rtdir=$(go list -m -f '{{.Dir}}' $rt) && rtver=$(go list -m -f '{{.Version}}' $rt) || {
	echo "$0: $rt is not in go.mod" >&2
	exit 2
}
modtmp=$(mktemp -d "${TMPDIR:-/tmp}/cubo-conformance-mod.XXXXXX") || exit 2
cp go.mod go.sum "$modtmp"/
mkdir -p "$bin" "$logs"
echo "building the runtime-tools $rtver validation suite into $bin"
if ! go get -modfile="$modtmp/go.mod" "$rt/validation/...@$rtver" "$rt/cmd/runtimetest@$rtver" >"$modtmp/log" 2>&1 ||
	! CGO_ENABLED=0 go build -modfile="$modtmp/go.mod" -o "$bin/" "$rt/validation/..." "$rt/cmd/runtimetest" >>"$modtmp/log" 2>&1; then
	cat "$modtmp/log" >&2
	rm -rf "$modtmp"
	exit 2
fi
rm -rf "$modtmp"
cp -f "$rtdir/rootfs-amd64.tar.gz" "$bin/"
chmod 0644 "$bin/rootfs-amd64.tar.gz"

if [ $# -gt 0 ]; then
	tests=$*
else
	# Every main package of validation/ (util is the shared library).
	tests=$(cd "$rtdir/validation" && for d in */; do
		d=${d%/}
		[ "$d" != util ] && echo "$d"
	done)
fi

# --- cleanup helpers ----------------------------------------------------------------------------
# Each program makes its bundles (ocitest*) and pid-file dirs (oci-pid*) with os.MkdirTemp, so a
# private TMPDIR holds everything it leaves behind.
scratch=$(mktemp -d /tmp/cubo-conformance.XXXXXX) || exit 2
# Like /tmp itself, the scratch dir must be searchable by the ids a user namespace maps, or
# the user-namespace tests fail on our account rather than the runtime's.
chmod 0755 "$scratch"

# cgroups the cgroup tests ask for: /cgrouptest, and testdir/cgrouptest/container relative to the
# caller's cgroup. Only those that did not exist before the run are removed.
cgroup_candidates() {
	for mnt in /sys/fs/cgroup/*; do
		[ -d "$mnt" ] || continue
		echo "$mnt/cgrouptest"
		ctl=$(basename "$mnt")
		own=$(awk -F: -v c="$ctl" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c || a[i] == "name=" c) print $3 } $2 == "" && c == "unified" { print $3 }' /proc/self/cgroup | head -n 1)
		own=${own%/}
		echo "$mnt$own/testdir/cgrouptest/container"
		echo "$mnt$own/testdir/cgrouptest"
		echo "$mnt$own/testdir"
	done
}
preexisting=""
for c in $(cgroup_candidates); do
	[ -d "$c" ] && preexisting="$preexisting $c "
done

# leftovers deletes the containers whose bundle lies in our scratch dir: never anyone else's,
# even under the runtime's shared default root.
leftovers() {
	"$runtime" list 2>/dev/null 9>&- | awk -v p="$scratch/" 'NR > 1 && index($4, p) == 1 { print $1 }' |
		while read -r id; do
			echo "  cleanup: $name delete --force $id" >>"$log"
			"$runtime" delete --force "$id" >>"$log" 2>&1 9>&-
		done
	for c in $(cgroup_candidates); do
		case $preexisting in *" $c "*) continue ;; esac
		[ -d "$c" ] && rmdir "$c" 2>/dev/null
	done
	# A runtime that leaked a mount into a bundle must not make rm walk into the host's files.
	awk -v p="$scratch/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	rm -rf --one-file-system "$scratch"/* 2>/dev/null
}

# judge prints the number of "ok" lines, "not ok" lines and failure diagnostics of a TAP log.
judge() {
	awk '
		/^not ok/ { bad++ }
		/^ok/ { ok++ }
		# A test line may continue on unindented lines (e.g. "Refer to: ...")
		# before its YAML block; only a block with no test line since the
		# previous block is an orphan.
		/^(not )?ok/ { intest = 1 }
		/^  ---/ && !intest { orphan = 1 }
		/^  \.\.\./ { orphan = 0; intest = 0 }
		orphan && /^    "error":/ { orphans++ }
		END { print ok + 0, bad + 0, orphans + 0 }
	' "$1"
}

finish() {
	log=/dev/null
	leftovers
	rm -rf --one-file-system "$scratch"
}
trap finish EXIT
trap 'exit 130' INT TERM

# --- run ----------------------------------------------------------------------------------------
passed=0
failed=0
# results holds "RESULT test note..." lines; a full run keeps them as results-<runtime>.txt
# for the comparison columns of later reports.
results=$logs/results.txt
: >"$results"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
cd "$bin" || exit 2
for t in $tests; do
	log=$logs/$t.tap
	if [ ! -x "$bin/$t" ]; then
		echo "no such validation program: $t" >"$log"
		rc=127
	else
		TMPDIR=$scratch RUNTIME=$runtime timeout -k 10 "$limit" "./$t" >"$log" 2>"$logs/$t.stderr" </dev/null 9>&-
		rc=$?
	fi
	set -- $(judge "$log")
	oks=$1 bad=$2 orphans=$3
	if [ "$rc" = 0 ] && [ "$bad" = 0 ] && [ "$orphans" = 0 ]; then
		result=PASS
		passed=$((passed + 1))
	else
		result=FAIL
		failed=$((failed + 1))
	fi
	note="$oks ok, $bad not ok"
	[ "$orphans" = 0 ] || note="$note, $orphans failure diagnostic(s)"
	[ "$oks$bad$orphans" = 000 ] && note="no assertions"
	[ "$rc" = 0 ] || note="$note, exit $rc"
	[ "$rc" = 124 ] && note="$note (timed out after ${limit}s)"
	echo "$result $t"
	echo "$result $t $note" >>"$results"
	leftovers
done
total=$((passed + failed))
echo "$passed passed, $failed failed"
if [ -z "$selected" ]; then
	{
		echo "# $name: ${version_line:-no --version output}"
		cat "$results"
	} >"$work/results-$name.txt"
fi

# Other runtimes' full runs become extra columns, so a cubo-runc report shows where runc or
# crun stand on the same host.
others=""
for f in "$work"/results-*.txt; do
	[ -f "$f" ] || continue
	other=${f#"$work"/results-}
	other=${other%.txt}
	[ "$other" = "$name" ] || others="$others $other"
done

mkdir -p "$(dirname "$report")"
{
	echo "# OCI runtime-tools conformance"
	echo
	echo "Generated by \`tests/conformance/run.sh\` (\`make conformance\`); do not edit by hand."
	echo
	echo "- runtime: \`$runtime\` (\`${version_line:-no --version output}\`)"
	echo "- date: $started"
	echo "- suite: runtime-tools $rtver validation programs, ${limit}s per program"
	echo "- command: \`tests/conformance/run.sh $runtime${selected:+ $selected}\`"
	echo "- host: $(uname -sr), $(if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo cgroup v2; else echo cgroup v1; fi)"
	echo "- result: **$passed of $total passed**"
	echo
	echo "A program passes when it exits 0 with no \`not ok\` line and no failure diagnostic (a YAML"
	echo "block with an \"error\" key under no test line: the lifecycle programs report so). Programs"
	echo "marked \"no assertions\" only speak up on failure. See tests/conformance/run.sh."
	echo "TAP logs: \`.conformance/logs/$name/<test>.tap\` and \`<test>.stderr\`."
	echo
	if [ -n "$others" ]; then
		echo "Other columns: the last full run of each runtime on this host, as recorded in"
		echo "\`.conformance/results-<runtime>.txt\`:"
		for o in $others; do
			echo "- $(head -n 1 "$work/results-$o.txt" | sed 's/^# //'), $(grep -c '^PASS' "$work/results-$o.txt") passed"
		done
		echo
	fi
	echo "Programs no runtime can pass with this suite version (checked in its source):"
	echo "- \`hooks\` compares the hook output with a string that lacks the \"called\" its own hooks write."
	echo "- \`linux_cgroups_pids\`, \`linux_cgroups_relative_pids\`, \`delete_resources\` compare"
	echo "  the *int64 pids limits as pointers (runtime-spec 1.3 made the field a pointer)."
	echo
	echo "Programs that assert against runc's behaviour (see the design's runc-cli.md): \`delete\`"
	echo "wants \`delete\` of a created container to fail (containerd relies on it succeeding; we"
	echo "keep runc's behaviour). \`start\` expects \`start\` of a container created without"
	echo "\`process\` to succeed, where the runtime spec says it MUST fail (we follow the spec)."
	echo "\`pidfile\` kills a container whose process is \`true\` and fails when \`true\` has"
	echo "already exited (a race the runtime loses by being fast). \`prestart\` wants prestart"
	echo "hooks to run at \`start\`; runc and cubo-runc run them at \`create\`, where Docker needs"
	echo "them. \`misc_props\` runs \`/runtimetest\` in a bundle it never copied it into, and"
	echo "\`process_rlimits\` reads RLIMIT_NOFILE inside runtimetest, a Go program whose runtime"
	echo "raises its own soft limit at start-up."
	echo
	echo "Programs bound to this host (cgroup v1 on a 6.18 kernel): \`linux_cgroups_memory\`"
	echo "(both) set kernel memory limits, which this kernel no longer has; \`linux_cgroups_blkio\`"
	echo "(both) set blkio.leaf_weight, which needs the removed CFQ scheduler;"
	echo "\`linux_cgroups_hugetlb\` (both) set 1 GB huge pages, which this VM does not offer;"
	echo "\`linux_cgroups_network\` (both) need net_cls/net_prio hierarchies, which are not mounted"
	echo "here (mounting them would change the host)."
	capbnd=$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)
	if [ -n "$capbnd" ] && [ $((0x$capbnd >> 24 & 1)) = 0 ]; then
		echo
		echo "This host's capability bounding set lacks CAP_SYS_RESOURCE, so no runtime can grant"
		echo "every capability (\`process_capabilities\`)."
	fi
	echo
	printf '| test | %s |' "$name"
	for o in $others; do printf ' %s |' "$o"; done
	printf ' TAP (%s) |\n|---|---|' "$name"
	for o in $others; do printf -- '---|'; done
	printf -- '---|\n'
	while read -r result t note; do
		printf '| %s | %s |' "$t" "$result"
		for o in $others; do
			r=$(awk -v t="$t" '$2 == t { print $1 }' "$work/results-$o.txt")
			printf ' %s |' "${r:-n/a}"
		done
		printf ' %s |\n' "$note"
	done <"$results"
} >"$report"
echo "report: $report"
[ "$failed" = 0 ]
