#!/bin/sh
# demo.sh BINDIR: run a real container, offline, from Debian's busybox-static.
# It builds an OCI bundle by hand, exactly as a runc user would, and runs it
# with cubo-runc.
set -eu
bin=${1:-$(dirname "$0")/../bin}
work=$(mktemp -d /tmp/cubo-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/busybox"
for applet in sh echo cat hostname id ls ps uname; do
	ln -s busybox "$work/rootfs/bin/$applet"
done
cd "$work"
"$bin/cubo-runc" spec
# Not a terminal, and a command that shows it really runs isolated.
sed -i -e 's/"terminal": true/"terminal": false/' \
	-e 's/"sh"$/"sh", "-c", "echo hello from $(hostname), pid $$; id; ls \/"/' config.json
"$bin/cubo-runc" --root "$work/state" run "demo-$$"
