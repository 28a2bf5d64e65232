package spec

import (
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	const atime = unix.MOUNT_ATTR__ATIME
	tests := []struct {
		opts []string
		want MountOptions
	}{
		{nil, MountOptions{}},
		{[]string{"defaults"}, MountOptions{}},
		{[]string{"ro"}, MountOptions{Flags: unix.MS_RDONLY}},
		{[]string{"rw"}, MountOptions{ClearedFlags: unix.MS_RDONLY}},
		{[]string{"ro", "rw"}, MountOptions{ClearedFlags: unix.MS_RDONLY}},
		{[]string{"rw", "ro"}, MountOptions{Flags: unix.MS_RDONLY}},
		{[]string{"nosuid"}, MountOptions{Flags: unix.MS_NOSUID}},
		{[]string{"suid"}, MountOptions{ClearedFlags: unix.MS_NOSUID}},
		{[]string{"nodev"}, MountOptions{Flags: unix.MS_NODEV}},
		{[]string{"dev"}, MountOptions{ClearedFlags: unix.MS_NODEV}},
		{[]string{"noexec"}, MountOptions{Flags: unix.MS_NOEXEC}},
		{[]string{"exec"}, MountOptions{ClearedFlags: unix.MS_NOEXEC}},
		{[]string{"sync"}, MountOptions{Flags: unix.MS_SYNCHRONOUS}},
		{[]string{"async"}, MountOptions{ClearedFlags: unix.MS_SYNCHRONOUS}},
		{[]string{"dirsync"}, MountOptions{Flags: unix.MS_DIRSYNC}},
		{[]string{"remount"}, MountOptions{Flags: unix.MS_REMOUNT}},
		{[]string{"mand"}, MountOptions{Flags: unix.MS_MANDLOCK}},
		{[]string{"nomand"}, MountOptions{ClearedFlags: unix.MS_MANDLOCK}},
		{[]string{"noatime"}, MountOptions{Flags: unix.MS_NOATIME}},
		{[]string{"atime"}, MountOptions{ClearedFlags: unix.MS_NOATIME}},
		{[]string{"nodiratime"}, MountOptions{Flags: unix.MS_NODIRATIME}},
		{[]string{"diratime"}, MountOptions{ClearedFlags: unix.MS_NODIRATIME}},
		{[]string{"relatime"}, MountOptions{Flags: unix.MS_RELATIME}},
		{[]string{"norelatime"}, MountOptions{ClearedFlags: unix.MS_RELATIME}},
		{[]string{"strictatime"}, MountOptions{Flags: unix.MS_STRICTATIME}},
		{[]string{"nostrictatime"}, MountOptions{ClearedFlags: unix.MS_STRICTATIME}},
		{[]string{"lazytime"}, MountOptions{Flags: unix.MS_LAZYTIME}},
		{[]string{"nolazytime"}, MountOptions{ClearedFlags: unix.MS_LAZYTIME}},
		{[]string{"iversion"}, MountOptions{Flags: unix.MS_I_VERSION}},
		{[]string{"noiversion"}, MountOptions{ClearedFlags: unix.MS_I_VERSION}},
		{[]string{"nosymfollow"}, MountOptions{Flags: unix.MS_NOSYMFOLLOW}},
		{[]string{"symfollow"}, MountOptions{ClearedFlags: unix.MS_NOSYMFOLLOW}},
		{[]string{"silent"}, MountOptions{Flags: unix.MS_SILENT}},
		{[]string{"loud"}, MountOptions{ClearedFlags: unix.MS_SILENT}},
		{[]string{"bind"}, MountOptions{Flags: unix.MS_BIND}},
		{[]string{"rbind"}, MountOptions{Flags: unix.MS_BIND | unix.MS_REC}},
		{[]string{"private"}, MountOptions{Propagation: []uintptr{unix.MS_PRIVATE}}},
		{[]string{"rprivate"}, MountOptions{Propagation: []uintptr{unix.MS_PRIVATE | unix.MS_REC}}},
		{[]string{"shared"}, MountOptions{Propagation: []uintptr{unix.MS_SHARED}}},
		{[]string{"rshared"}, MountOptions{Propagation: []uintptr{unix.MS_SHARED | unix.MS_REC}}},
		{[]string{"slave"}, MountOptions{Propagation: []uintptr{unix.MS_SLAVE}}},
		{[]string{"rslave"}, MountOptions{Propagation: []uintptr{unix.MS_SLAVE | unix.MS_REC}}},
		{[]string{"unbindable"}, MountOptions{Propagation: []uintptr{unix.MS_UNBINDABLE}}},
		{[]string{"runbindable"}, MountOptions{Propagation: []uintptr{unix.MS_UNBINDABLE | unix.MS_REC}}},
		{[]string{"rslave", "private"}, MountOptions{Propagation: []uintptr{unix.MS_SLAVE | unix.MS_REC, unix.MS_PRIVATE}}},
		{[]string{"rro"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_RDONLY}},
		{[]string{"rrw"}, MountOptions{RecAttrClr: unix.MOUNT_ATTR_RDONLY}},
		{[]string{"rro", "rrw"}, MountOptions{RecAttrClr: unix.MOUNT_ATTR_RDONLY}},
		{[]string{"rnosuid"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_NOSUID}},
		{[]string{"rsuid"}, MountOptions{RecAttrClr: unix.MOUNT_ATTR_NOSUID}},
		{[]string{"rnodev"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_NODEV}},
		{[]string{"rdev"}, MountOptions{RecAttrClr: unix.MOUNT_ATTR_NODEV}},
		{[]string{"rnoexec"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_NOEXEC}},
		{[]string{"rexec"}, MountOptions{RecAttrClr: unix.MOUNT_ATTR_NOEXEC}},
		{[]string{"rnodiratime"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_NODIRATIME}},
		{[]string{"rdiratime"}, MountOptions{RecAttrClr: unix.MOUNT_ATTR_NODIRATIME}},
		{[]string{"rnosymfollow"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_NOSYMFOLLOW}},
		{[]string{"rsymfollow"}, MountOptions{RecAttrClr: unix.MOUNT_ATTR_NOSYMFOLLOW}},
		// The atime mode is one field: every atime option replaces it whole.
		{[]string{"rnoatime"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_NOATIME, RecAttrClr: atime}},
		{[]string{"ratime"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_RELATIME, RecAttrClr: atime}},
		{[]string{"rrelatime"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_RELATIME, RecAttrClr: atime}},
		{[]string{"rnorelatime"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_RELATIME, RecAttrClr: atime}},
		{[]string{"rstrictatime"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_STRICTATIME, RecAttrClr: atime}},
		{[]string{"rnostrictatime"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_RELATIME, RecAttrClr: atime}},
		{[]string{"rnoatime", "rstrictatime"}, MountOptions{RecAttrSet: unix.MOUNT_ATTR_STRICTATIME, RecAttrClr: atime}},
		{[]string{"rstrictatime", "rnoexec", "rnoatime"}, MountOptions{
			RecAttrSet: unix.MOUNT_ATTR_NOATIME | unix.MOUNT_ATTR_NOEXEC, RecAttrClr: atime,
		}},
		{[]string{"idmap"}, MountOptions{IDMap: true}},
		{[]string{"ridmap"}, MountOptions{IDMap: true, RecursiveIDMap: true}},
		{[]string{"tmpcopyup"}, MountOptions{TmpCopyUp: true}},
		{[]string{"mode=755", "size=65536k"}, MountOptions{Data: "mode=755,size=65536k"}},
		{[]string{"", "x"}, MountOptions{Data: "x"}},
		// runc spec's /dev/pts and a typical read-only recursive bind.
		{[]string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}, MountOptions{
			Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5",
		}},
		{[]string{"rbind", "rro", "rprivate", "nosuid", "upperdir=/u", "ro"}, MountOptions{
			Flags:       unix.MS_BIND | unix.MS_REC | unix.MS_NOSUID | unix.MS_RDONLY,
			Propagation: []uintptr{unix.MS_PRIVATE | unix.MS_REC},
			RecAttrSet:  unix.MOUNT_ATTR_RDONLY,
			Data:        "upperdir=/u",
		}},
	}
	for _, tt := range tests {
		got := ParseMountOptions(tt.opts)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseMountOptions(%q)\n got  %+v\n want %+v", tt.opts, got, tt.want)
		}
	}
}

// TestMountOptionTablesDisjoint guards against one name in two tables, where the lookup
// order would silently pick one meaning.
func TestMountOptionTablesDisjoint(t *testing.T) {
	seen := map[string]string{}
	add := func(table, name string) {
		if other, ok := seen[name]; ok {
			t.Errorf("%q is in both %s and %s", name, other, table)
		}
		seen[name] = table
	}
	for k := range mountFlags {
		add("mountFlags", k)
	}
	for k := range propagationFlags {
		add("propagationFlags", k)
	}
	for k := range recAttrFlags {
		add("recAttrFlags", k)
	}
	for k := range recAtime {
		add("recAtime", k)
	}
	for _, k := range []string{"idmap", "ridmap", "tmpcopyup"} {
		add("extensions", k)
	}
}
