package container

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestValidateID(t *testing.T) {
	good := []string{"a", "abc-DEF_1.2+3", strings.Repeat("x", 255), "..a", "a.."}
	for _, id := range good {
		if err := ValidateID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	bad := map[string]error{
		"":                       ErrEmptyID,
		".":                      ErrInvalidID,
		"..":                     ErrInvalidID,
		"a/b":                    ErrInvalidID,
		"../x":                   ErrInvalidID,
		"a b":                    ErrInvalidID,
		"a\x00":                  ErrInvalidID,
		strings.Repeat("x", 256): ErrInvalidID,
	}
	for id, want := range bad {
		if err := ValidateID(id); err != want {
			t.Errorf("%q: want %v, got %v", id, want, err)
		}
	}
}

func TestCloneFlags(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
		{Type: specs.CgroupNamespace}, {Type: specs.UTSNamespace},
	}}}
	flags, pidns, env, err := cloneFlags(s)
	if err != nil {
		t.Fatal(err)
	}
	want := unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWNET | unix.CLONE_NEWUTS
	if flags != want || pidns != "" || len(env) != 0 {
		t.Fatalf("flags %#x pidns %q env %v", flags, pidns, env)
	}
	// Joining any namespace by path moves the new ones (but pid) to the
	// nsenter constructor, user namespace joined first.
	s.Linux.Namespaces = []specs.LinuxNamespace{
		{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"}, {Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}, {Type: specs.UserNamespace, Path: "/proc/1/ns/user"},
	}
	flags, pidns, env, err = cloneFlags(s)
	if err != nil {
		t.Fatal(err)
	}
	if flags != 0 || pidns != "/proc/1/ns/pid" {
		t.Fatalf("flags %#x pidns %q", flags, pidns)
	}
	joined := strings.Join(env, " ")
	if !strings.Contains(joined, "net=/proc/1/ns/net") || !strings.Contains(joined, "user=/proc/1/ns/user") || !strings.Contains(joined, "_CUBO_UNSHARE=131072") {
		t.Fatalf("env %v", env)
	}
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "bogus"}}
	if _, _, _, err := cloneFlags(s); err == nil {
		t.Fatal("unknown namespace type accepted")
	}
}

func TestEffectiveResources(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11}}}}
	r := effectiveResources(s)
	if len(r.Devices) == 0 || r.Devices[0].Allow || r.Devices[0].Access != "rwm" {
		t.Fatalf("no deny-all first: %+v", r.Devices)
	}
	for _, d := range r.Devices {
		if d.Allow && d.Major != nil && *d.Major == 1 && d.Minor != nil && *d.Minor == 11 {
			t.Fatal("a linux.devices node must not be allowed implicitly")
		}
	}
	// The config's own rules stay first and in order.
	maj := int64(4)
	s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: &maj, Access: "r"}}}
	r = effectiveResources(s)
	if !r.Devices[0].Allow || *r.Devices[0].Major != 4 {
		t.Fatalf("config rules reordered: %+v", r.Devices[0])
	}
}

func TestMergeResources(t *testing.T) {
	lim, swap, newLim := int64(100), int64(200), int64(300)
	old := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &lim, Swap: &swap}, CPU: &specs.LinuxCPU{Cpus: "0"}}
	out := mergeResources(old, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &newLim}})
	if *out.Memory.Limit != 300 || *out.Memory.Swap != 200 || out.CPU.Cpus != "0" {
		t.Fatalf("merge lost fields: %+v %+v", out.Memory, out.CPU)
	}
}

func TestSubCgroupPaths(t *testing.T) {
	base := map[string]string{"memory": "/sys/fs/cgroup/memory/c", "cpu": "/sys/fs/cgroup/cpu/c"}
	out, err := subCgroupPaths(base, []string{"memory:sub"})
	if err != nil || out["memory"] != "/sys/fs/cgroup/memory/c/sub" || out["cpu"] != "/sys/fs/cgroup/cpu/c" {
		t.Fatalf("%v %v", out, err)
	}
	if _, err := subCgroupPaths(base, []string{"../escape"}); err == nil {
		t.Fatal("escaping --cgroup accepted")
	}
}

// TestSaveLoadKeepsConfig: state.json embeds the config as read (whitespace
// and all) and is valid JSON that loads back to the same container.
func TestSaveLoadKeepsConfig(t *testing.T) {
	root := t.TempDir()
	raw := []byte("\n {\"ociVersion\": \"1.0.2\", \"hostname\": \"h\",\n  \"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"}}")
	c := &Container{root: root, dir: filepath.Join(root, "c1")}
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c.State = State{ID: "c1", Bundle: "/b", InitPid: 42, ConfigJSON: raw}
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(c.dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("state.json is not valid JSON: %s", b)
	}
	got, err := Load(root, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.InitPid != 42 || got.Bundle != "/b" || got.Config.Hostname != "h" || got.Config.Process.Args[0] != "sh" {
		t.Fatalf("loaded %+v, config %+v", got.State, got.Config)
	}
	// Saved again (after Update re-encodes), it still loads.
	got.ConfigJSON = nil
	got.Config.Hostname = "h2"
	if err := got.save(); err != nil {
		t.Fatal(err)
	}
	if again, err := Load(root, "c1"); err != nil || again.Config.Hostname != "h2" {
		t.Fatalf("reload after re-encode: %v %+v", err, again)
	}
}
