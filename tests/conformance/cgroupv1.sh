# cgroupv1.sh: a complete cgroup v1 layout for the length of a conformance run. Sourced by
# run.sh, which runs the suite in a private mount namespace (unshare -m --propagation private)
# when CONFORMANCE_V1 is not 0.
#
# The validation programs look for every controller under one v1 mount point, and crun refuses
# a hybrid host whose cgroup2 mount holds controllers. On a legacy or hybrid host, cg_setup
# (run inside the private namespace) therefore:
#   - binds the controllers no hierarchy holds (/proc/cgroups hierarchy 0: hugetlb, net_cls,
#     net_prio on a hybrid Debian host) to v1 hierarchies of their own;
#   - builds a fresh tmpfs for /sys/fs/cgroup with the host's v1 hierarchies moved onto it, the
#     new ones beside them (net_cls and net_prio as symlinks to net_cls,net_prio, as systemd
#     lays them out), and no cgroup2 mount.
# None of these mounts is visible on the host. Binding a controller is global, though: while
# the hierarchy exists, the controller is not available to cgroup2. A controller that cgroup2
# uses (enabled in some cgroup.subtree_control, as runtimes enable hugetlb on a hybrid host)
# cannot be bound; cg_setup disables it there (bottom-up) when no cgroup2 cgroup has a limit
# on it, and records what it disabled. cg_teardown removes the child cgroups the runtimes left
# in the new hierarchies (a hierarchy with children outlives its last mount and keeps its
# controllers); once the namespace is gone the kernel destroys the hierarchies and the
# controllers return to cgroup2, and cg_restore (run by the outer run.sh on the host) waits for
# that, enables the controller again where cg_setup disabled it, and checks that nothing is
# left. When a controller cannot be bound, cg_setup changes nothing and the run uses the host's
# layout as it is (CONFORMANCE_V1=1 makes that an error instead).
#
# State shared between the namespace and the outer run.sh (one "key value" a line):
#   ns <mnt namespace>          the private namespace (to name processes that keep it alive)
#   bound <options> <id>        a hierarchy cg_setup created: its mount options (the
#                               controllers, e.g. net_cls,net_prio) and /proc/cgroups id
#   disabled <controller> <dir> a cgroup2 dir (relative to the cgroup2 mount, "/" for its
#                               root) whose cgroup.subtree_control lost the controller
#   unified <mountpoint>        the host's cgroup2 mount point

cg_v1_controllers="hugetlb net_cls net_prio"

# cg_hier prints the hierarchy id /proc/cgroups gives controller $1 ("" when unknown or
# disabled).
cg_hier() {
	awk -v c="$1" '$1 == c && $4 == 1 { print $2 }' /proc/cgroups
}

# cg_has_word FILE WORD: whether the whitespace-separated FILE holds WORD.
cg_has_word() {
	tr ' ' '\n' <"$1" 2>/dev/null | grep -qx "$2"
}

# cg_release_v2 UNIFIED CONTROLLER: disables CONTROLLER in every cgroup.subtree_control of the
# cgroup2 tree, deepest first, recording each dir in $cg_state. Refuses (returns 1, reason in
# $cg_why) when a cgroup2 cgroup has a limit on it.
cg_release_v2() {
	u=$1 c=$2
	limited=$(find "$u" -mindepth 2 -maxdepth 64 -name "$c.*.max" -type f 2>/dev/null |
		while read -r f; do
			v=$(cat "$f" 2>/dev/null) || continue
			# "max", or a v1 "unlimited" (2^63 - page size) written through: no limit.
			case $v in max | 92233720368547*) ;; *) echo "$f" ;; esac
		done | head -n 3)
	if [ -n "$limited" ]; then
		cg_why="cgroup2 cgroups hold $c limits ($(echo $limited))"
		return 1
	fi
	find "$u" -type d 2>/dev/null | awk -F/ '{ print NF "\t" $0 }' | sort -rn | cut -f 2- |
		while read -r d; do
			cg_has_word "$d/cgroup.subtree_control" "$c" || continue
			rel=${d#"$u"}
			grep -qxF "disabled $c ${rel:-/}" "$cg_state" || echo "disabled $c ${rel:-/}" >>"$cg_state"
			echo "-$c" >"$d/cgroup.subtree_control" 2>/dev/null || true
		done
	return 0
}

# cg_setup lays out /sys/fs/cgroup in the current (private) mount namespace. It sets cg_env to a
# one-line description of the layout the run uses and cg_new to the new hierarchies' mount
# points. Returns 1 when it changed nothing and CONFORMANCE_V1=1 asked for the layout.
cg_setup() {
	cg_new=""
	root=/sys/fs/cgroup
	if [ -f $root/cgroup.controllers ]; then
		cg_env="cgroup v2 (unified), used as it is"
		return 0
	fi
	if [ "$(findmnt -n -o FSTYPE --mountpoint $root)" != tmpfs ]; then
		cg_env="host layout as it is ($root is not a tmpfs of cgroup v1 hierarchies)"
		return 0
	fi
	echo "ns $(readlink /proc/self/ns/mnt)" >>"$cg_state"
	unified=$(findmnt -n -l -t cgroup2 -o TARGET | awk -v r="$root/" 'index($0, r) == 1')
	host=$(cg_describe_host "$unified")

	# Which controllers to bind: those enabled in the kernel and bound to no hierarchy. A
	# controller bound to a hierarchy not mounted here cannot be shown; say so.
	want="" missing=""
	for c in $cg_v1_controllers; do
		h=$(cg_hier "$c")
		[ -n "$h" ] || continue
		if [ "$h" = 0 ]; then
			want="$want $c"
		elif ! findmnt -n -t cgroup -O "$c" >/dev/null; then
			missing="$missing $c"
		fi
	done
	groups="" net=""
	for c in $want; do
		case $c in
		net_*) net=${net:+$net,}$c ;;
		*) groups="$groups $c" ;;
		esac
	done
	groups=$(echo $groups $net)

	stage=$(mktemp -d /tmp/cubo-conformance-cgroup.XXXXXX) || return 1
	mount -t tmpfs -o mode=755 cubo-conformance "$stage" || { rmdir "$stage"; return 1; }
	cg_why=""
	for g in $groups; do
		mkdir "$stage/$g"
		n=0
		until mount -t cgroup -o "$g" "cubo-conformance-$g" "$stage/$g" 2>/dev/null; do
			# EBUSY: cgroup2 holds the controller. Release it there and try again: a disabled
			# controller's css goes away asynchronously, and a runtime creating a container
			# meanwhile may enable it again, so it can take a few rounds.
			n=$((n + 1))
			if [ -z "$unified" ] || [ $n -gt 100 ]; then
				cg_why="${cg_why:-mount -t cgroup -o $g failed: the controller is busy}"
				break
			fi
			for c in $(echo "$g" | tr , ' '); do
				if cg_has_word "$unified/cgroup.controllers" "$c"; then
					cg_release_v2 "$unified" "$c" || break 2
				fi
			done
			sleep 0.1
		done
		[ -z "$cg_why" ] || break
		echo "bound $g $(cg_hier "${g%%,*}")" >>"$cg_state"
	done
	if [ -n "$cg_why" ]; then
		for g in $groups; do umount "$stage/$g" 2>/dev/null; done
		umount "$stage" && rmdir "$stage"
		cg_env="$host, used as it is: could not bind $(echo $groups) to cgroup v1 ($cg_why)"
		if [ "${CONFORMANCE_V1:-}" = 1 ]; then
			echo "cgroup v1 layout: $cg_why" >&2
			return 1
		fi
		echo "note: running on the host's cgroup layout: $cg_why" >&2
		return 0
	fi
	for g in $groups; do
		case $g in *,*)
			for c in $(echo "$g" | tr , ' '); do ln -s "$g" "$stage/$c"; done
			;;
		esac
	done

	# Move the host's v1 hierarchies onto the new tmpfs, leave cgroup2 behind, and put the
	# tmpfs in place of the host's.
	for d in $root/*; do
		b=${d##*/}
		[ -e "$stage/$b" ] || [ -L "$stage/$b" ] && continue
		if [ -L "$d" ]; then
			ln -s "$(readlink "$d")" "$stage/$b"
		elif [ -d "$d" ] && [ "$d" != "$unified" ]; then
			mkdir "$stage/$b"
			if mountpoint -q "$d"; then
				mount --move "$d" "$stage/$b" || return 1
			fi
		fi
	done
	for u in $unified; do umount -l "$u" || return 1; done
	umount $root 2>/dev/null || umount -l $root || return 1
	mount --move "$stage" $root || return 1
	rmdir "$stage"
	[ -z "$unified" ] || echo "unified $unified" >>"$cg_state"

	for g in $groups; do cg_new="$cg_new $root/$g"; done
	cg_env="$host; for the run, in a private mount namespace:"
	if [ -n "$groups" ]; then
		cg_env="$cg_env $(echo $groups | sed 's/ /, /g') bound to cgroup v1 hierarchies of their own"
		[ -z "$unified" ] || cg_env="$cg_env,"
	fi
	[ -z "$unified" ] || cg_env="$cg_env the cgroup2 mount hidden"
	[ -n "$groups$unified" ] || cg_env="$cg_env nothing to change"
	[ -z "$missing" ] || cg_env="$cg_env (bound elsewhere, not visible:$missing)"
	return 0
}

# cg_describe_host UNIFIED: the host's layout in a few words.
cg_describe_host() {
	v1=$(findmnt -n -l -t cgroup -o TARGET | awk -v r=/sys/fs/cgroup/ 'index($0, r) == 1 { sub(r, ""); print }' | tr '\n' ' ')
	if [ -n "$1" ]; then
		ctl=$(cat "$1/cgroup.controllers" 2>/dev/null)
		echo "host: hybrid (cgroup v1 ${v1% }; cgroup2 at $1 with ${ctl:-no controllers})" | sed 's/  */ /g'
	else
		echo "host: cgroup v1 (${v1% })"
	fi
}

# cg_teardown removes the child cgroups left in the hierarchies cg_setup created, deepest first,
# and waits for them to be gone: the kernel destroys a hierarchy when its last mount goes only
# if it has no children then, dying ones included, and one that outlives the namespace keeps
# its controllers from cgroup2 (cg_restore can still recover it, by mounting it once more).
cg_teardown() {
	ok=0
	for m in $cg_new; do
		find "$m" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
		left=$(find "$m" -mindepth 1 -type d 2>/dev/null)
		[ -z "$left" ] && continue
		ok=1
		for d in $left; do
			echo "cgroup v1 layout: cannot remove $d (tasks: $(tr '\n' ' ' <"$d/cgroup.procs" 2>/dev/null))" >&2
		done
	done
	[ $ok = 0 ] || return 1
	n=0
	while [ $n -lt 20 ] && [ -n "$(cg_dying)" ]; do
		sleep 0.5
		n=$((n + 1))
	done
	return 0
}

# cg_dying prints the recorded hierarchies that still count cgroups besides their root.
cg_dying() {
	awk '$1 == "bound" { print $2, $3 }' "$cg_state" | while read -r g id; do
		awk -v c="${g%%,*}" -v id="$id" '$1 == c && $2 == id && $3 > 1 { print c }' /proc/cgroups
	done
}

# cg_bound prints "options id" for each recorded hierarchy that still exists.
cg_bound() {
	awk '$1 == "bound" { print $2, $3 }' "$cg_state" | while read -r g id; do
		[ "$(cg_hier "${g%%,*}")" = "$id" ] && echo "$g $id"
	done
}

# cg_wait_unbound [TRIES]: polls (half-second steps) until no recorded hierarchy exists.
cg_wait_unbound() {
	n=0
	while [ -n "$(cg_bound)" ]; do
		n=$((n + 1))
		[ $n -le "${1:-20}" ] || return 1
		sleep 0.5
	done
	return 0
}

# cg_restore (on the host, after the namespace's last process is gone) makes sure the hierarchies
# cg_setup created are destroyed, so that their controllers return to cgroup2, enables them
# again where cg_setup disabled them, and checks that no mount of the run is left. Returns 1 if
# something is left over.
cg_restore() {
	[ -s "$cg_state" ] || { rm -f "$cg_state"; return 0; }
	ret=0
	ns=$(awk '$1 == "ns" { print $2 }' "$cg_state" | head -n 1)
	unified=$(awk '$1 == "unified" { print $2 }' "$cg_state" | head -n 1)
	# Processes may still be leaving the namespace (a test program finishing after an
	# interrupt): give them longer than run.sh's per-program timeout.
	n=0
	while :; do
		pids=""
		if [ -n "$ns" ]; then
			pids=$(for p in /proc/[0-9]*; do
				[ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
			done | tr '\n' ' ')
		fi
		[ -n "$pids" ] && [ $n -lt "${CG_RESTORE_WAIT:-150}" ] || break
		[ $n != 0 ] || echo "waiting for the processes left in the run's mount namespace: $pids"
		sleep 1
		n=$((n + 1))
	done
	if [ -n "$pids" ]; then
		echo "cgroup v1 layout: processes still in the run's mount namespace: $pids" >&2
		ret=1
	elif ! cg_wait_unbound 20; then
		# A hierarchy whose children were still dying when its last mount went lingers with
		# its controllers. Mounting it again (same options: the kernel reuses it) and
		# unmounting it with no children destroys it.
		cg_bound | while read -r g id; do
			echo "cgroup v1 layout: hierarchy $id ($g) outlived the run; mounting it once more to end it"
			unshare -m --propagation private -- sh -c '
				d=$(mktemp -d /tmp/cubo-conformance-cgroup.XXXXXX) || exit 1
				if mount -t cgroup -o "$1" "cubo-conformance-$1" "$d"; then
					find "$d" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
					umount "$d"
				fi
				rmdir "$d"' sh "$g"
		done
		if ! cg_wait_unbound 60; then
			echo "cgroup v1 layout: still bound to the run's hierarchies: $(cg_bound | tr '\n' ' ')" >&2
			ret=1
		fi
	fi
	# Enable the controllers again top-down (parents first), where the dir still exists.
	if [ -n "$unified" ]; then
		failed=$(awk '$1 == "disabled" { c = $2; d = $0; sub(/^disabled [^ ]+ /, "", d); n = split(d, a, "/")
			print (d == "/" ? 0 : n) "\t" c "\t" d }' "$cg_state" |
			sort -n | cut -f 2- | while IFS="	" read -r c d; do
				dir=$unified${d%/}
				[ -d "$dir" ] || continue
				cg_has_word "$dir/cgroup.subtree_control" "$c" && continue
				echo "+$c" >"$dir/cgroup.subtree_control" 2>/dev/null || echo "$c in $dir/cgroup.subtree_control"
			done)
		if [ -n "$failed" ]; then
			echo "cgroup v1 layout: could not enable again: $failed" >&2
			ret=1
		fi
	fi
	if findmnt -n -l -o SOURCE,TARGET | grep -q '^cubo-conformance'; then
		echo "cgroup v1 layout: mounts left on the host:" >&2
		findmnt -n -l -o SOURCE,TARGET | grep '^cubo-conformance' >&2
		ret=1
	fi
	[ $ret = 0 ] && rm -f "$cg_state"
	return $ret
}
