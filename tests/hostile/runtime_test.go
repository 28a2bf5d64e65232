package hostile

import (
	"crypto/sha256"
	"encoding/hex"

	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestBadUserIDs: uid/gid 4294967295 is (uid_t)-1, which setresuid/setresgid read as
// "leave unchanged": a runtime passing it through would run the process as root. Such IDs
// must be refused, or the process must not end up with that id 0. Negative and
// non-numeric IDs are JSON errors.
func TestBadUserIDs(t *testing.T) {
	r := newRT(t)
	const minus1 = 4294967295
	cases := []struct {
		name string
		user specs.User
	}{
		{"uid-minus-1", specs.User{UID: minus1, GID: 1000}},
		{"gid-minus-1", specs.User{UID: 1000, GID: minus1}},
		{"additional-gid-minus-1", specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{minus1}}},
		{"both-minus-1", specs.User{UID: minus1, GID: minus1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "badid-" + tc.name
			b := bundle(t, t.TempDir(), id, []string{"id"}, func(s *specs.Spec) { s.Process.User = tc.user })
			r.cleanup(t, id)
			res := r.run("run", "--bundle", b, id)
			if res.err != nil {
				t.Logf("refused: %s", oneLine(t, res))
				return
			}
			t.Logf("ran: %s", strings.TrimSpace(res.stdout))
			ids := map[string]string{}
			for _, f := range strings.Fields(res.stdout) {
				if k, v, ok := strings.Cut(f, "="); ok {
					ids[k] = v
				}
			}
			if ids["uid"] == "" {
				t.Fatalf("probe output %q", res.stdout)
			}
			if tc.user.UID == minus1 && (ids["uid"] == "0" || ids["euid"] == "0") {
				knownBug(t, "user.uid 4294967295 ((uid_t)-1, setresuid's \"unchanged\") ran the process as root: %s", strings.TrimSpace(res.stdout))
			}
			if tc.user.GID == minus1 && (ids["gid"] == "0" || ids["egid"] == "0") {
				knownBug(t, "user.gid 4294967295 ((gid_t)-1) ran the process with gid 0: %s", strings.TrimSpace(res.stdout))
			}
			if slices.Contains(strings.Split(ids["groups"], ","), "0") {
				t.Errorf("the process kept supplementary group 0: %s", res.stdout)
			}
		})
	}
	t.Run("negative", func(t *testing.T) {
		dir := t.TempDir()
		b := bundle(t, dir, "badid-neg", []string{"id"}, nil)
		raw, err := os.ReadFile(filepath.Join(b, "config.json"))
		must(t, err)
		raw = []byte(strings.Replace(string(raw), `"uid": 0`, `"uid": -1`, 1))
		must(t, os.WriteFile(filepath.Join(b, "config.json"), raw, 0o644))
		r.cleanup(t, "badid-neg")
		res := r.run("run", "--bundle", b, "badid-neg")
		if res.err == nil {
			t.Fatalf("uid -1 accepted: %s", res.stdout)
		}
		if msg := oneLine(t, res); !strings.Contains(msg, "config.json") {
			t.Errorf("error does not name config.json: %q", msg)
		}
	})
}

// TestUIDMappingOverflow: user namespace mappings whose ranges overflow or overlap must
// be refused with a clear error, before anything runs.
func TestUIDMappingOverflow(t *testing.T) {
	r := newRT(t)
	for _, tc := range []struct {
		name string
		uid  []specs.LinuxIDMapping
	}{
		{"overflow", []specs.LinuxIDMapping{{ContainerID: 0, HostID: 4294967000, Size: 1000}}},
		{"overlap", []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 500, HostID: 200000, Size: 1000}}},
		{"zero-size", []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "map-" + tc.name
			b := bundle(t, t.TempDir(), id, []string{"id"}, func(s *specs.Spec) {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
				s.Linux.UIDMappings = tc.uid
				s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
			})
			r.cleanup(t, id)
			res := r.run("run", "--bundle", b, id)
			if res.err == nil {
				t.Fatalf("mapping %+v accepted: %s", tc.uid, res.stdout)
			}
			t.Logf("refused: %s", oneLine(t, res))
		})
	}
}

// TestRootPathOutsideBundle: root.path is a host path chosen by whoever writes
// config.json, relative paths resolving against the bundle; "../../x" is as legitimate as
// an absolute path (runc accepts both). The runtime must use exactly the directory it
// names and create nothing beside it.
func TestRootPathOutsideBundle(t *testing.T) {
	r := newRT(t)
	work := t.TempDir()
	b := filepath.Join(work, "a", "b", "bundle")
	must(t, os.MkdirAll(b, 0o755))
	bundle(t, b, "rootpath", []string{"cat", "/marker"}, func(s *specs.Spec) { s.Root.Path = "../../../outside" })
	// Move the prepared rootfs to work/outside, which "../../../outside" names.
	must(t, os.Rename(filepath.Join(b, "rootfs"), filepath.Join(work, "outside")))
	must(t, os.WriteFile(filepath.Join(work, "outside", "marker"), []byte("outside-root\n"), 0o644))
	before := listTree(t, work)
	r.cleanup(t, "rootpath")
	res := r.run("run", "--bundle", b, "rootpath")
	if res.err != nil {
		t.Fatalf("run: %v: %s", res.err, res.stderr)
	}
	if !strings.Contains(res.stdout, "outside-root") {
		t.Fatalf("the container did not run in the named root: %q", res.stdout)
	}
	after := listTree(t, work)
	for _, p := range after {
		if !slices.Contains(before, p) && !strings.HasPrefix(p, "outside/") {
			t.Errorf("created outside the root: %s", p)
		}
	}
	// A root.path escaping to something that does not exist is a one-line error.
	s := readSpec(t, b)
	s.Root.Path = "../../../../../../../../../../../nonexistent-root"
	writeSpec(t, b, s)
	res = r.run("create", "--bundle", b, "rootpath2")
	r.cleanup(t, "rootpath2")
	if res.err == nil {
		t.Fatal("a missing root.path was accepted")
	}
	if msg := oneLine(t, res); !strings.Contains(msg, "rootfs") {
		t.Errorf("error does not say rootfs: %q", msg)
	}
}

func readSpec(t *testing.T, dir string) *specs.Spec {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	must(t, err)
	var s specs.Spec
	must(t, jsonUnmarshal(raw, &s))
	return &s
}

// TestMountsIntoProc: mounts whose destination is in the container's /proc, directly
// ("/proc/sysrq-trigger", "/proc/sys") or through a symlink the image planted ("/data"
// -> "/proc"). runc refuses these ("... cannot be mounted because it is inside /proc",
// CVE-2019-19921): a mount covering procfs makes what the runtime writes there afterwards
// (here: a sysctl the config sets) land in whatever was mounted, such as a host volume.
// The host's mount table must not change and no host file may be written.
func TestMountsIntoProc(t *testing.T) {
	r := newRT(t)
	cases := []struct {
		name  string
		dest  string
		tmpfs bool
		link  string // rootfs/data -> link when set
	}{
		{"sysrq-trigger", "/proc/sysrq-trigger", false, ""},
		{"proc-sys", "/proc/sys", false, ""},
		{"via-symlink", "/data", false, "/proc"},
		{"via-relative-symlink", "/data/sys", false, "../../../proc"},
		{"tmpfs-via-symlink", "/data/self", true, "../proc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "proc-" + tc.name
			work := t.TempDir()
			// The host volume holds files where the sysctl would land if it covered
			// /proc (sys/kernel/...) or /proc/sys (kernel/...); fake-sysrq stands in
			// for /proc/sysrq-trigger.
			vol := filepath.Join(work, "vol")
			for _, f := range []string{"sys/kernel/shm_rmid_forced", "kernel/shm_rmid_forced"} {
				must(t, os.MkdirAll(filepath.Dir(filepath.Join(vol, f)), 0o755))
				must(t, os.WriteFile(filepath.Join(vol, f), []byte("0\n"), 0o644))
			}
			fake := filepath.Join(work, "fake-sysrq")
			must(t, os.WriteFile(fake, []byte("untouched\n"), 0o644))
			m := specs.Mount{Destination: tc.dest, Type: "bind", Source: vol, Options: []string{"rbind"}}
			switch {
			case tc.tmpfs:
				m = specs.Mount{Destination: tc.dest, Type: "tmpfs", Source: "tmpfs"}
			case tc.dest == "/proc/sysrq-trigger":
				m.Source, m.Options = fake, []string{"bind"}
			}
			before := hostMounts(t)
			volBefore := treeState(t, vol)
			b := bundle(t, filepath.Join(work, "b"), id, []string{"mounts"}, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, m)
				s.Linux.Sysctl = map[string]string{"kernel.shm_rmid_forced": "1"}
			})
			if tc.link != "" {
				must(t, os.Symlink(tc.link, filepath.Join(b, "rootfs", "data")))
			}
			r.cleanup(t, id)
			res := r.run("create", "--bundle", b, id)
			accepted := res.err == nil
			if accepted {
				if got := hostMounts(t); !slices.Equal(got, before) {
					t.Errorf("the host mount table changed: %v", diff(got, before))
				}
				r.run("delete", "--force", id)
			} else {
				t.Logf("refused: %s", oneLine(t, res))
			}
			if b, _ := os.ReadFile(fake); string(b) != "untouched\n" {
				t.Errorf("the host file mounted on /proc/sysrq-trigger was written: %q", b)
			}
			if got := treeState(t, vol); !maps.Equal(got, volBefore) {
				knownBug(t, "a mount on %s (through %q) covered procfs and the runtime wrote the sysctl into the host volume: %v -> %v (runc refuses mounts inside /proc)", tc.dest, tc.link, volBefore, got)
			}
			if accepted {
				t.Logf("runc parity: a mount on %s (through %q) inside /proc was accepted; runc refuses it", tc.dest, tc.link)
			}
		})
	}
}

// treeState maps every path below dir to its type and content.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		v := "other"
		switch {
		case d.IsDir():
			v = "dir"
		case d.Type().IsRegular():
			b, _ := os.ReadFile(p)
			v = fmt.Sprintf("file %q", b)
		}
		out[strings.TrimPrefix(p, dir)] = v
		return nil
	})
	return out
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, "+"+x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, "-"+x)
		}
	}
	return out
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	must(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

// TestMountSourceProcSelf: a bind mount whose source is /proc/self/... is resolved by the
// runtime's init, so /proc/self/exe is the runtime binary (CVE-2019-5736's target) and
// /proc/self/fd/N one of the runtime's fds. The container must never get the runtime
// binary writable: the binary's hash must not change whatever the container writes.
func TestMountSourceProcSelf(t *testing.T) {
	r := newRT(t)
	sum := sha256File(t, runtimePath)
	for _, src := range []string{"/proc/self/exe", "/proc/thread-self/exe", "/proc/1/exe"} {
		name := strings.ReplaceAll(strings.TrimPrefix(src, "/proc/"), "/", "-")
		t.Run(name, func(t *testing.T) {
			id := "procsrc-" + name
			b := bundle(t, t.TempDir(), id, []string{"open", "/rt", "w", "+", "write", "/rt", "pwned"}, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/rt", Type: "bind", Source: src, Options: []string{"bind"}})
			})
			r.cleanup(t, id)
			res := r.run("run", "--bundle", b, id)
			if res.err != nil {
				t.Logf("refused: %s", oneLine(t, res))
			} else {
				t.Logf("ran: %s", strings.TrimSpace(res.stdout))
				if strings.Contains(res.stdout, "write /rt ok") || strings.Contains(res.stdout, "open /rt ok") {
					t.Errorf("the container could open the bind of %s for writing: %s", src, res.stdout)
				}
			}
			if got := sha256File(t, runtimePath); got != sum {
				t.Fatalf("the runtime binary changed: %s -> %s", sum, got)
			}
		})
	}
}

// TestMountTargetSymlinkLoop: a mount destination going through a symlink loop in the
// rootfs is refused with a clear error (ELOOP), not followed forever.
func TestMountTargetSymlinkLoop(t *testing.T) {
	r := newRT(t)
	b := bundle(t, t.TempDir(), "loop", []string{"mounts"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/a/x", Type: "tmpfs", Source: "tmpfs"})
	})
	must(t, os.Symlink("b", filepath.Join(b, "rootfs", "a")))
	must(t, os.Symlink("a", filepath.Join(b, "rootfs", "b")))
	r.cleanup(t, "loop")
	res := r.run("create", "--bundle", b, "loop")
	if res.err == nil {
		t.Fatal("a mount through a symlink loop was accepted")
	}
	msg := oneLine(t, res)
	if !strings.Contains(msg, "/a/x") {
		t.Errorf("error does not name the destination: %q", msg)
	}
	t.Logf("refused: %s", msg)
}

// TestMountTargetSwapRace flips a directory of the rootfs between a real directory and a
// symlink to a host directory (absolute and relative) while cubo-runc create mounts over
// a path below it, again and again. Resolution must stay in the rootfs whatever the
// interleaving: nothing is ever mounted on the host directory (checked in
// /proc/self/mountinfo after every create) and no file appears there.
func TestMountTargetSwapRace(t *testing.T) {
	r := newRT(t)
	work := t.TempDir()
	host := filepath.Join(work, "host-target")
	must(t, os.Mkdir(host, 0o755))
	must(t, os.Mkdir(filepath.Join(host, "sub"), 0o755))
	share := filepath.Join(work, "share")
	must(t, os.Mkdir(share, 0o755))
	must(t, os.WriteFile(filepath.Join(share, "from-share"), []byte("x"), 0o644))
	b := bundle(t, filepath.Join(work, "b"), "race", []string{"echo", "ok"}, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/flip/sub", Type: "bind", Source: share, Options: []string{"rbind"}},
			specs.Mount{Destination: "/flip/tmp", Type: "tmpfs", Source: "tmpfs"})
	})
	rootfs := filepath.Join(b, "rootfs")
	// flip is swapped atomically (RENAME_EXCHANGE) with flip.alt, which is a symlink to
	// the host dir: absolute in odd rounds, relative in even ones.
	flip, alt := filepath.Join(rootfs, "flip"), filepath.Join(rootfs, "flip.alt")
	must(t, os.MkdirAll(filepath.Join(flip, "sub"), 0o755))
	must(t, os.Mkdir(filepath.Join(flip, "tmp"), 0o755))
	rel := strings.Repeat("../", 20) + strings.TrimPrefix(host, "/")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var swaps int
	const rounds = 40
	for round := 0; round < rounds; round++ {
		target := host
		if round%2 == 0 {
			target = rel
		}
		os.Remove(alt)
		if err := os.Symlink(target, alt); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := unix.Renameat2(unix.AT_FDCWD, flip, unix.AT_FDCWD, alt, unix.RENAME_EXCHANGE); err == nil {
					swaps++
				}
			}
		}()
		id := fmt.Sprintf("race%d", round)
		res := r.run("create", "--bundle", b, id)
		stop <- struct{}{}
		wg.Wait()
		if res.err != nil {
			oneLine(t, res)
		}
		if m := mountedAtOrBelow(t, host); len(m) > 0 {
			t.Fatalf("round %d: mounted on the host dir: %v", round, m)
		}
		if got := listTree(t, host); !slices.Equal(got, []string{"sub"}) {
			t.Fatalf("round %d: the host dir changed: %v", round, got)
		}
		if res.err == nil {
			if m := mountedAtOrBelow(t, host); len(m) > 0 {
				t.Fatalf("round %d: mounted on the host dir: %v", round, m)
			}
		}
		if d := r.run("delete", "--force", id); d.err != nil && res.err == nil {
			t.Fatalf("delete %s: %v: %s", id, d.err, d.stderr)
		}
		// Put flip back as the directory for the next round.
		var st unix.Stat_t
		if unix.Lstat(flip, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			must(t, unix.Renameat2(unix.AT_FDCWD, flip, unix.AT_FDCWD, alt, unix.RENAME_EXCHANGE))
		}
	}
	t.Logf("%d swaps over %d creates", swaps, rounds)
	if m := mountedAtOrBelow(t, host); len(m) > 0 {
		t.Fatalf("mounted on the host dir: %v", m)
	}
}
