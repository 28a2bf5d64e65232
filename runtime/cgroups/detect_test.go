package cgroups

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// mountinfoLine renders one /proc/self/mountinfo line for a cgroup mount.
func mountinfoLine(id int, root, mountpoint, fstype, superOpts string) string {
	return fmt.Sprintf("%d 1 0:%d %s %s rw,nosuid,nodev,noexec,relatime - %s %s %s\n",
		id, id, root, mountpoint, fstype, fstype, superOpts)
}

const hostV1Hybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const hostV1Comounted = `25 18 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
30 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`

const hostV2 = `30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

// A container without a cgroup namespace: the mounts expose the container's
// own cgroup as their root.
const containerV1 = `700 690 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory
701 690 0:33 /docker/abc /sys/fs/cgroup/pids ro - cgroup cgroup rw,pids
702 690 0:38 /docker/abc /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
`

func TestMode(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, want string
	}{
		{"hybrid", hostV1Hybrid, ModeHybrid},
		{"v1", hostV1Comounted, ModeV1},
		{"v2", hostV2, ModeV2},
		{"v2 with a named v1 hierarchy", hostV2 + "40 31 0:37 / /run/cg/systemd rw - cgroup cgroup rw,name=systemd\n", ModeV2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Mode(WithMountinfo(strings.NewReader(tc.mountinfo)))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Mode = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := Mode(WithMountinfo(strings.NewReader("22 1 0:5 / /proc rw - proc proc rw\n"))); err == nil {
		t.Error("Mode with no cgroup mounts: want an error")
	}
}

func TestPaths(t *testing.T) {
	const ownHybrid = `9:name=systemd:/user.slice/session-1.scope
8:pids:/user.slice
7:blkio:/
6:freezer:/
5:devices:/user.slice
4:memory:/user.slice/session-1.scope
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/user.slice/session-1.scope
`
	const ownComounted = `5:memory:/mem
4:net_cls,net_prio:/net
3:cpu,cpuacct:/svc
1:name=systemd:/svc
`
	for _, tc := range []struct {
		name      string
		mountinfo string
		own       string
		cfg       Config
		want      map[string]string
		wantErr   string
	}{
		{
			name:      "absolute hybrid",
			mountinfo: hostV1Hybrid,
			cfg:       Config{Path: "/cubo/c1", Name: "ignored"},
			want: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu/cubo/c1", "cpuacct": "/sys/fs/cgroup/cpuacct/cubo/c1",
				"cpuset": "/sys/fs/cgroup/cpuset/cubo/c1", "memory": "/sys/fs/cgroup/memory/cubo/c1",
				"devices": "/sys/fs/cgroup/devices/cubo/c1", "freezer": "/sys/fs/cgroup/freezer/cubo/c1",
				"blkio": "/sys/fs/cgroup/blkio/cubo/c1", "pids": "/sys/fs/cgroup/pids/cubo/c1",
				"name=systemd": "/sys/fs/cgroup/systemd/cubo/c1", "": "/sys/fs/cgroup/unified/cubo/c1",
			},
		},
		{
			name:      "relative to own cgroup",
			mountinfo: hostV1Hybrid,
			own:       ownHybrid,
			cfg:       Config{Path: "cubo/c1"},
			want: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu/cubo/c1", "cpuacct": "/sys/fs/cgroup/cpuacct/cubo/c1",
				"cpuset":  "/sys/fs/cgroup/cpuset/cubo/c1",
				"memory":  "/sys/fs/cgroup/memory/user.slice/session-1.scope/cubo/c1",
				"devices": "/sys/fs/cgroup/devices/user.slice/cubo/c1", "freezer": "/sys/fs/cgroup/freezer/cubo/c1",
				"blkio": "/sys/fs/cgroup/blkio/cubo/c1", "pids": "/sys/fs/cgroup/pids/user.slice/cubo/c1",
				"name=systemd": "/sys/fs/cgroup/systemd/user.slice/session-1.scope/cubo/c1",
				"":             "/sys/fs/cgroup/unified/user.slice/session-1.scope/cubo/c1",
			},
		},
		{
			name:      "empty path is the relative name",
			mountinfo: hostV1Comounted,
			own:       ownComounted,
			cfg:       Config{Name: "c2"},
			want: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu,cpuacct/svc/c2", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/svc/c2",
				"net_cls": "/sys/fs/cgroup/net_cls,net_prio/net/c2", "net_prio": "/sys/fs/cgroup/net_cls,net_prio/net/c2",
				"memory": "/sys/fs/cgroup/memory/mem/c2", "name=systemd": "/sys/fs/cgroup/systemd/svc/c2",
			},
		},
		{
			name:      "relative path cannot climb",
			mountinfo: hostV1Comounted,
			own:       ownComounted,
			cfg:       Config{Path: "../../../x"},
			want: map[string]string{
				"cpu": "/sys/fs/cgroup/cpu,cpuacct/svc/x", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/svc/x",
				"net_cls": "/sys/fs/cgroup/net_cls,net_prio/net/x", "net_prio": "/sys/fs/cgroup/net_cls,net_prio/net/x",
				"memory": "/sys/fs/cgroup/memory/mem/x", "name=systemd": "/sys/fs/cgroup/systemd/svc/x",
			},
		},
		{
			name:      "absolute path is cleaned",
			mountinfo: hostV2,
			cfg:       Config{Path: "/a/../b//c"},
			want:      map[string]string{"": "/sys/fs/cgroup/b/c"},
		},
		{
			name:      "v2 relative leaves init.scope",
			mountinfo: hostV2,
			own:       "0::/init.scope\n",
			cfg:       Config{Name: "c3"},
			want:      map[string]string{"": "/sys/fs/cgroup/c3"},
		},
		{
			name:      "mount root of a container without cgroupns",
			mountinfo: containerV1,
			own:       "5:memory:/docker/abc\n4:pids:/docker/abc/sub\n0::/docker/abc\n",
			cfg:       Config{Path: "inner"},
			want: map[string]string{
				"memory": "/sys/fs/cgroup/memory/inner",
				"pids":   "/sys/fs/cgroup/pids/sub/inner",
				"":       "/sys/fs/cgroup/unified/inner",
			},
		},
		{
			name:      "no path and no name",
			mountinfo: hostV2,
			cfg:       Config{},
			wantErr:   "neither path nor name",
		},
		{
			name:      "relative without own v1 entry",
			mountinfo: hostV1Comounted,
			own:       "0::/\n",
			cfg:       Config{Name: "x"},
			wantErr:   "own cgroup for",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.cfg, WithMountinfo(strings.NewReader(tc.mountinfo)), WithProcCgroup(strings.NewReader(tc.own)))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New error = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := m.Paths()
			if !equalMaps(got, tc.want) {
				t.Errorf("Paths:\n got  %s\n want %s", fmtMap(got), fmtMap(tc.want))
			}
		})
	}
}

func TestNewHybridWithoutOwnUnifiedEntry(t *testing.T) {
	// The unified side of a hybrid host is optional: a relative path with no
	// "0::" line in /proc/self/cgroup just leaves it out.
	m, err := New(Config{Name: "c"}, WithMountinfo(strings.NewReader(hostV1Hybrid)),
		WithProcCgroup(strings.NewReader("1:cpu:/\n2:cpuacct:/\n3:cpuset:/\n4:memory:/\n5:devices:/\n6:freezer:/\n7:blkio:/\n8:pids:/\n9:name=systemd:/\n")))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Paths()[""]; ok {
		t.Errorf("unified path present without an own unified cgroup: %v", m.Paths())
	}
	if len(m.Paths()) != 9 {
		t.Errorf("want 9 v1 paths, got %v", m.Paths())
	}
}

func TestLoadMode(t *testing.T) {
	for _, tc := range []struct {
		paths map[string]string
		want  string
	}{
		{map[string]string{"": "/sys/fs/cgroup/c"}, ModeV2},
		{map[string]string{"": "/sys/fs/cgroup/unified/c", "memory": "/sys/fs/cgroup/memory/c"}, ModeHybrid},
		{map[string]string{"memory": "/sys/fs/cgroup/memory/c"}, ModeV1},
	} {
		m, err := Load(tc.paths)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.(*manager).mode; got != tc.want {
			t.Errorf("Load(%v) mode = %s, want %s", tc.paths, got, tc.want)
		}
		if !equalMaps(m.Paths(), tc.paths) {
			t.Errorf("Load(%v).Paths() = %v", tc.paths, m.Paths())
		}
	}
	if _, err := Load(nil); err == nil {
		t.Error("Load(nil): want an error")
	}
	if _, err := Load(map[string]string{"memory": "rel/x"}); err == nil {
		t.Error("Load with a relative path: want an error")
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func fmtMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%s ", k, filepath.Clean(m[k]))
	}
	return b.String()
}
