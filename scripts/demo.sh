#!/bin/sh
# demo.sh BINDIR: the main job, offline. It makes a real image from Debian's
# busybox-static (a rootfs tarball imported as busybox:demo), runs a
# container from it with cubo (which drives cubo-runc) attached to the
# terminal, and shows it in `cubo logs` and `cubo ps --all`. The image stays in the store for more.
set -eu
bin=${1:-$(cd "$(dirname "$0")/.." && pwd)/bin}
work=$(mktemp -d /tmp/cubo-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in $("$work/rootfs/bin/busybox" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$work/rootfs/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/rootfs/etc/passwd"
echo 'root:x:0:' >"$work/rootfs/etc/group"
tar -C "$work/rootfs" -czf "$work/busybox.tar.gz" .

"$bin/cubo" import "$work/busybox.tar.gz" busybox:demo
"$bin/cubo" blueprint
name="demo-$$"
"$bin/cubo" run --interactive --name "$name" --env GREETING=hello --volume /etc:/host-etc:ro --network none \
	busybox:demo sh -c 'echo "$GREETING from $(hostname), pid $$ in its own namespace"; id; ls /host-etc | head -3; touch /host-etc/x 2>&1 || true'
echo "--- cubo logs $name"
"$bin/cubo" logs "$name"
echo "--- cubo ps --all"
"$bin/cubo" ps --all
"$bin/cubo" rm "$name" >/dev/null
