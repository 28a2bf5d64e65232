#!/bin/sh
# run.sh: the OCI runtime-tools validation suite against a runc-compatible runtime.
#
#   tests/conformance/run.sh [-o REPORT] [-t SECONDS] [-c PEER]... RUNTIME [TEST...]
#
# RUNTIME is the runtime binary (an absolute path or a name on PATH); TEST names select some of
# the validation programs (default: all of them). Each -c PEER first runs the whole suite
# against PEER (e.g. -c runc -c crun), in the same environment, for the comparison columns.
# Must run as root.
#
# cgroups: the validation programs want every controller under one cgroup v1 mount point, and
# crun refuses a hybrid host. Unless CONFORMANCE_V1=0, a run on a v1 or hybrid host happens in a
# private mount namespace (unshare -m --propagation private) where /sys/fs/cgroup is a complete
# v1 layout: the controllers no hierarchy holds (hugetlb, net_cls, net_prio on Debian's hybrid
# layout) are bound to v1 hierarchies of their own for the length of the run, and the cgroup2
# mount is hidden. See cgroupv1.sh for what that takes (binding is global while the run lasts)
# and how it is undone. When a controller cannot be bound, the run uses the host's layout and
# says so in the report (CONFORMANCE_V1=1 makes that an error). The report records the layout.
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
# .conformance/results-<runtime>.txt (with the cgroup layout it ran on), and every report
# shows the other runtimes' last full runs as extra columns: `make conformance
# CONFORMANCE_PEERS="runc crun"` reruns them first, plain `make conformance` reuses them.
#
# Cleanup: each program makes its bundles with os.MkdirTemp, so they run with TMPDIR set to a
# scratch dir; after each program, containers whose bundle lies there are deleted with
# `RUNTIME delete --force` (never anyone else's, even under the shared default root), the test
# cgroups (cgrouptest, testdir) that did not exist before the run are removed, and the scratch
# dir is emptied. At the end, the child cgroups left in the hierarchies bound for the run are
# removed, and the host's cgroup2 tree gets back the controllers the run took from it.
set -u

usage() {
	echo "usage: $0 [-o REPORT] [-t SECONDS] [-c PEER]... RUNTIME [TEST...]" >&2
	exit 2
}

if [ "$(id -u)" != 0 ]; then
	echo "$0: the validation suite must run as root" >&2
	exit 2
fi
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$top/.conformance
. "$top/tests/conformance/cgroupv1.sh"
cg_state=$work/cgroup-v1.state

# One run at a time: runs share the programs in .conformance/bin, the host-wide test cgroups
# (/cgrouptest), which a concurrent run's cleanup would remove under the other's feet, and the
# cgroup controllers a run binds. The runtime never gets fd 9, so a container that outlives its
# test cannot hold the lock. The runs this one starts (in its namespace, for -c) inherit it.
if [ -z "${CUBO_CONFORMANCE_LOCKED:-}" ]; then
	mkdir -p "$work"
	exec 9>"$work/lock"
	if ! flock -n 9; then
		echo "waiting for another run.sh to finish"
		flock 9
	fi
	export CUBO_CONFORMANCE_LOCKED=1
	# A run killed before it could undo its cgroup changes left their record.
	if [ -s "$cg_state" ]; then
		echo "undoing the cgroup changes of an interrupted run"
		cg_restore || exit 2
	fi
	if [ "${CONFORMANCE_V1:-}" != 0 ] && [ ! -f /sys/fs/cgroup/cgroup.controllers ]; then
		if ! command -v unshare >/dev/null; then
			echo "$0: unshare (util-linux) is needed for the cgroup v1 layout; CONFORMANCE_V1=0 runs without it" >&2
			exit 2
		fi
		# The run proper happens in a private mount namespace; this process stays on the host
		# to undo the global part afterwards, even after an interrupt.
		trap 'interrupted=1' INT TERM
		CUBO_CONFORMANCE_NS=1 unshare -m --propagation private -- "$self" "$@"
		rc=$?
		trap - INT TERM
		if ! cg_restore; then
			echo "$0: the cgroup changes of the run are not all undone (record: $cg_state)" >&2
			[ "$rc" != 0 ] || rc=2
		fi
		exit $rc
	fi
fi

report=""
limit=120
peers=""
while getopts o:t:c:h opt; do
	case $opt in
	o) report=$OPTARG ;;
	t) limit=$OPTARG ;;
	c) case $OPTARG in
		/* | "") ;;
		*/*) OPTARG=$(cd "$(dirname "$OPTARG")" && pwd)/$(basename "$OPTARG") ;;
		esac
		peers="$peers $OPTARG" ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
arg=$1
runtime=$1
shift
selected=$*

case $runtime in
/*) ;;
*/*) runtime=$(cd "$(dirname "$runtime")" && pwd)/$(basename "$runtime") ;;
*) runtime=$(command -v "$runtime") || { echo "$0: $arg: not found" >&2; exit 2; } ;;
esac
if [ ! -x "$runtime" ]; then
	echo "$0: $runtime: not an executable file" >&2
	exit 2
fi

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

# --- cgroup layout -------------------------------------------------------------------------------
# The first run in the namespace lays out the cgroups; the runs it starts for -c inherit the
# layout and its description (CUBO_CONFORMANCE_CGROUPS).
teardown=""
if [ -z "${CUBO_CONFORMANCE_CGROUPS:-}" ]; then
	if [ -n "${CUBO_CONFORMANCE_NS:-}" ]; then
		trap 'cg_teardown' EXIT
		trap 'exit 130' INT TERM
		cg_setup || exit 2
		teardown=1
	elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		cg_env="cgroup v2 (unified), used as it is"
	else
		cg_env="$(cg_describe_host "$(findmnt -n -l -t cgroup2 -o TARGET | awk 'index($0, "/sys/fs/cgroup/") == 1')"), used as it is (CONFORMANCE_V1=0)"
	fi
	CUBO_CONFORMANCE_CGROUPS=$cg_env
	export CUBO_CONFORMANCE_CGROUPS
fi
cg_env=$CUBO_CONFORMANCE_CGROUPS
echo "cgroups: $cg_env"

# --- build ------------------------------------------------------------------------------------
rt=github.com/opencontainers/runtime-tools
cd "$top" || exit 2
rtdir=$(go list -m -f '{{.Dir}}' $rt) && rtver=$(go list -m -f '{{.Version}}' $rt) || {
	echo "$0: $rt is not in go.mod" >&2
	exit 2
}
mkdir -p "$bin" "$logs"
if [ -z "${CUBO_CONFORMANCE_BUILT:-}" ]; then
	modtmp=$(mktemp -d "${TMPDIR:-/tmp}/cubo-conformance-mod.XXXXXX") || exit 2
	cp go.mod go.sum "$modtmp"/
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
	CUBO_CONFORMANCE_BUILT=1
	export CUBO_CONFORMANCE_BUILT
fi

if [ $# -gt 0 ]; then
	tests=$*
else
	# Every main package of validation/ (util is the shared library).
	tests=$(cd "$rtdir/validation" && for d in */; do
		d=${d%/}
		[ "$d" != util ] && echo "$d"
	done)
fi

# --- peers -------------------------------------------------------------------------------------
# Each -c runtime gets a full run of its own first (same layout, same programs), which leaves
# its results-<peer>.txt for this run's comparison columns.
[ -z "$peers" ] || trap 'exit 130' INT TERM
for p in $peers; do
	echo "== $p"
	"$self" -t "$limit" "$p" || true
	echo "== $name"
done

# --- cleanup helpers ----------------------------------------------------------------------------
# Each program makes its bundles (ocitest*) and pid-file dirs (oci-pid*) with os.MkdirTemp, so a
# private TMPDIR holds everything it leaves behind.
scratch=$(mktemp -d /tmp/cubo-conformance.XXXXXX) || exit 2
# Like /tmp itself, the scratch dir must be searchable by the ids a user namespace maps, or
# the user-namespace tests fail on our account rather than the runtime's.
chmod 0755 "$scratch"

# cgroups the cgroup tests ask for: /cgrouptest, and testdir/cgrouptest/container relative to the
# caller's cgroup, or to the hierarchy's root (crun 1.8.1 puts it under the memory hierarchy's
# root here, where our own memory cgroup is not the root).
# Only those that did not exist before the run are removed.
cgroup_candidates() {
	for mnt in /sys/fs/cgroup/*; do
		[ -d "$mnt" ] || continue
		echo "$mnt/cgrouptest"
		ctl=$(basename "$mnt")
		ctl=${ctl%%,*} # net_cls,net_prio
		own=$(awk -F: -v c="$ctl" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c || a[i] == "name=" c) print $3 } $2 == "" && c == "unified" { print $3 }' /proc/self/cgroup | head -n 1)
		own=${own%/}
		for base in "$mnt$own" "$mnt"; do
			echo "$base/testdir/cgrouptest/container"
			echo "$base/testdir/cgrouptest"
			echo "$base/testdir"
			[ -n "$own" ] || break
		done
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
	[ -z "$teardown" ] || cg_teardown
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
		echo "# date: $started"
		echo "# cgroups: $cg_env"
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
# runc first, then crun, then the rest.
others=$(for o in $others; do
	case $o in runc) echo "0 $o" ;; crun) echo "1 $o" ;; *) echo "2 $o" ;; esac
done | sort | cut -d' ' -f2 | tr '\n' ' ')

# What the cgroup layout of this run bound, for the report's explanation.
v1_bound="" v1_released=""
if [ -n "${CUBO_CONFORMANCE_NS:-}" ] && [ -s "$cg_state" ]; then
	v1_bound=$(awk '$1 == "bound" { print $2 }' "$cg_state" | sed 's/,/ and /' | tr '\n' ',' | sed 's/,$//; s/,/, /g')
	grep -q '^disabled hugetlb ' "$cg_state" && v1_released=1
fi

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
	echo "- kernel: $(uname -sr)"
	echo "- cgroups: $cg_env"
	echo "- result: **$passed of $total passed**"
	echo
	echo "A program passes when it exits 0 with no \`not ok\` line and no failure diagnostic (a YAML"
	echo "block with an \"error\" key under no test line: the lifecycle programs report so). Programs"
	echo "marked \"no assertions\" only speak up on failure. See tests/conformance/run.sh."
	echo "TAP logs: \`.conformance/logs/$name/<test>.tap\` and \`<test>.stderr\`."
	echo
	echo "cgroups: the validation programs read every controller under one cgroup v1 mount point"
	echo "(/sys/fs/cgroup/<controller>), and crun refuses a hybrid host whose cgroup2 mount holds"
	echo "controllers; the cgroups line above gives this host's layout."
	case $cg_env in
	*"private mount namespace"*)
		echo "The run happened in a private mount namespace (\`unshare -m --propagation private\`) whose"
		echo "/sys/fs/cgroup is a fresh tmpfs holding the host's v1 hierarchies and no cgroup2 mount."
		[ -z "$v1_bound" ] || echo "$v1_bound got cgroup v1 hierarchies of their own there, for the length of the run."
		if [ -n "$v1_released" ]; then
			echo "hugetlb was enabled in the host's cgroup2 tree (\`cgroup.subtree_control\`), which keeps"
			echo "it from v1: the run disabled it there (no cgroup2 cgroup had a hugetlb limit) and"
			echo "enabled it again afterwards."
		fi
		if [ -n "$v1_bound" ]; then
			echo "None of these mounts shows on the host, but binding a controller is global: while the"
			echo "run lasts, cgroup2 cannot offer the controllers bound. The run ends by removing the child"
			echo "cgroups left in those hierarchies, so that the kernel destroys them and the controllers"
			echo "return to cgroup2."
		fi
		echo "\`CONFORMANCE_V1=0\` runs on the host's layout as it is."
		;;
	*)
		echo "This run used the host's layout as it is, so \`linux_cgroups_hugetlb\` and"
		echo "\`linux_cgroups_network\` (both) fail unless hugetlb and net_cls/net_prio are v1"
		echo "hierarchies, and crun refuses to run at all on a hybrid host whose cgroup2 mount holds"
		echo "controllers."
		;;
	esac
	echo
	if [ -n "$others" ]; then
		echo "Other columns: the last full run of each runtime on this host, as recorded in"
		echo "\`.conformance/results-<runtime>.txt\`:"
		for o in $others; do
			f=$work/results-$o.txt
			odate=$(sed -n 's/^# date: //p' "$f")
			oenv=$(sed -n 's/^# cgroups: //p' "$f")
			line="- $o: $(head -n 1 "$f" | sed 's/^# [^:]*: //'), **$(grep -c '^PASS' "$f") passed**"
			[ -z "$odate" ] || line="$line, $odate"
			if [ "$oenv" != "$cg_env" ]; then
				line="$line; a different cgroup layout: ${oenv:-not recorded}"
			fi
			echo "$line"
		done
		echo
		case " $others " in *" crun "* | *" crun-oci1.0.2 "*)
			echo "crun 1.8.1 (Debian 12) refuses any \`ociVersion\` that does not contain \"1.0\" (\"unknown"
			echo "version specified\"), and the suite writes runtime-spec 1.3.0 configs, so the \`crun\`"
			echo "column fails every program that starts a container. The \`crun-oci1.0.2\` column is the"
			echo "same crun run through tests/conformance/crun-oci1.0.2, which only rewrites the bundle's"
			echo "\`ociVersion\` to 1.0.2 before \`create\`: it shows what crun does with the rest of the configs."
			echo
			;;
		esac
	fi
	echo "Programs no runtime can pass with this suite version (checked in its source):"
	echo "- \`hooks\` compares the hook output with a string that lacks the \"called\" its own hooks write."
	echo "- \`linux_cgroups_pids\`, \`linux_cgroups_relative_pids\`, \`delete_resources\` compare"
	echo "  the *int64 pids limits as pointers (runtime-spec 1.3 made the field a pointer)."
	echo "- \`misc_props\` runs \`/runtimetest\` in a bundle it never copied it into."
	echo "- \`process_rlimits\` reads RLIMIT_NOFILE inside runtimetest, a Go program whose runtime"
	echo "  raises its own soft limit at start-up."
	echo
	echo "Programs that assert against runc's behaviour (see the design's runc-cli.md): \`delete\`"
	echo "wants \`delete\` of a created container to fail (containerd relies on it succeeding; runc,"
	echo "crun and cubo-runc all allow it). \`start\` expects \`start\` of a container created without"
	echo "\`process\` to succeed, where the runtime spec says it MUST fail (we follow the spec)."
	echo "\`prestart\` wants prestart hooks to run at \`start\`; runc, crun and cubo-runc run them at"
	echo "\`create\`, where Docker needs them."
	echo
	echo "Races: \`pidfile\` kills a container whose process is \`true\` and fails when \`true\` has"
	echo "already exited (a race the runtime loses by being fast). \`poststart\` wants the container"
	echo "process's line in its output file before the poststart hook's. cubo-runc runs the hook"
	echo "once the process has been executed (\`start\` waits for the execve, as runc's does), as the"
	echo "spec asks, but nothing orders the process's write and the hook's: the program passes in"
	echo "some runs and fails in others, with crun as with cubo-runc (runc 1.1 fails it every time:"
	echo "it runs poststart hooks at \`create\`)."
	echo
	echo "Programs bound to this kernel ($(uname -r)): \`linux_cgroups_memory\` (both) set a kernel"
	echo "memory limit (memory.kmem.limit_in_bytes), which this kernel accepts and ignores (kernel"
	echo "memory limits are obsolete since Linux 5.4; runtime-spec 1.3 deprecates the field). runc"
	echo "1.1 and cubo-runc write neither \`kernel\` nor \`kernelTCP\` (cubo-runc follows runc); crun"
	echo "writes both, which gets its \`kernelTCP\` checks through but not the program."
	echo "\`linux_cgroups_blkio\` (both) set blkio.leaf_weight, which needs the removed CFQ scheduler."
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
