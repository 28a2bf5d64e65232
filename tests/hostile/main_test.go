// Package hostile is the hostile-input integration suite: images, layers, registries and
// bundles crafted to break out, run against the image store and the built cubo-runc.
// Each case must be refused with a clear one-line error, or neutralized, and nothing may
// be written or mounted outside where it belongs. See docs/security.md for the threat
// model and for the related cases in tests/images (TestHostileLayers) and tests/
// (escape.txtar, cve_test.go), which this suite does not repeat.
//
// It needs root; as another user every test skips. The runtime is $CUBO_RUNC, or
// bin/cubo-runc from `make build`, or one built here; CUBO_TEST_RUNTIME=/usr/sbin/runc runs
// the runtime cases against another runtime for comparison.
package hostile

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

var (
	runtimePath string // cubo-runc under test
	probePath   string // static probe (tests/cmd/probe)
	skipReason  string
	setupErr    error
)

// cgroupParent holds every test container's cgroup, removed at the end.
const cgroupParent = "cubo-hostile"

func TestMain(m *testing.M) {
	code := func() int {
		tmp, err := os.MkdirTemp("", "cubo-hostile-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		setup(tmp)
		code := m.Run()
		removeCgroupParent()
		return code
	}()
	os.Exit(code)
}

func setup(tmp string) {
	if os.Geteuid() != 0 {
		skipReason = "the hostile-input suite mounts, unpacks as root and starts containers: run it as root (make test)"
		return
	}
	var err error
	if probePath, err = hostenv.BuildProbe(tmp); err != nil {
		setupErr = err
		return
	}
	runtimePath, setupErr = hostenv.RuntimeUnderTest(tmp)
}

// requireRoot skips or fails t according to what TestMain found.
func requireRoot(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// rt is cubo-runc with a private state root.
type rt struct {
	root string
}

type result struct {
	stdout, stderr string
	err            error
}

func newRT(t *testing.T) *rt {
	t.Helper()
	requireRoot(t)
	return &rt{root: t.TempDir()}
}

// run runs the runtime with stdout and stderr going to files, not pipes: a created
// container's init inherits them and would keep a pipe open until it exits.
func (r *rt) run(args ...string) result {
	outF, err := os.CreateTemp(r.root, "out-")
	if err != nil {
		return result{err: err}
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	errF, err := os.CreateTemp(r.root, "err-")
	if err != nil {
		return result{err: err}
	}
	defer os.Remove(errF.Name())
	defer errF.Close()
	cmd := exec.Command(runtimePath, append([]string{"--root", r.root}, args...)...)
	cmd.Stdout, cmd.Stderr = outF, errF
	err = cmd.Run()
	out, _ := os.ReadFile(outF.Name())
	errb, _ := os.ReadFile(errF.Name())
	return result{string(out), string(errb), err}
}

// knownBug reports a bug that is known and reported but not fixed yet: the test skips
// with "BUG: ..." so `make test` stays green, unless CUBO_HOSTILE_STRICT=1 makes it fail.
func knownBug(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := "BUG: " + fmt.Sprintf(format, args...)
	if os.Getenv("CUBO_HOSTILE_STRICT") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// cleanup force-deletes id when the test ends, whatever happened.
func (r *rt) cleanup(t *testing.T, id string) {
	t.Cleanup(func() { r.run("delete", "--force", id) })
}

// bundle makes DIR/rootfs (the probe at /probe and the usual empty directories) and
// DIR/config.json from `cubo-runc spec`, running the probe with args, then lets edit
// change the spec.
func bundle(t *testing.T, dir, id string, args []string, edit func(*specs.Spec)) string {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"proc", "dev", "sys", "tmp", "etc"} {
		must(t, os.MkdirAll(filepath.Join(rootfs, d), 0o755))
	}
	b, err := os.ReadFile(probePath)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(rootfs, "probe"), b, 0o755))
	out, err := exec.Command(runtimePath, "spec", "--bundle", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("cubo-runc spec: %v: %s", err, out)
	}
	var s specs.Spec
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	must(t, err)
	must(t, json.Unmarshal(raw, &s))
	s.Process.Terminal = false
	s.Process.Args = append([]string{"/probe"}, args...)
	s.Linux.CgroupsPath = "/" + cgroupParent + "/" + id
	if edit != nil {
		edit(&s)
	}
	writeSpec(t, dir, &s)
	return dir
}

func writeSpec(t *testing.T, dir string, s *specs.Spec) {
	t.Helper()
	raw, err := json.MarshalIndent(s, "", "  ")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// oneLine checks that a refusal is a clear one-line error on stderr.
func oneLine(t *testing.T, r result) string {
	t.Helper()
	msg := strings.TrimSpace(r.stderr)
	if msg == "" {
		t.Fatalf("refused without a message (%v)", r.err)
	}
	if strings.Count(msg, "\n") > 0 {
		t.Errorf("error is not one line: %q", msg)
	}
	return msg
}

// hostMounts returns the mount points of the calling (host) mount namespace.
func hostMounts(t *testing.T) []string {
	t.Helper()
	ms, err := mountinfo.GetMounts(nil)
	must(t, err)
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Mountpoint
	}
	return out
}

// mountedAtOrBelow lists the host mounts at p or below it.
func mountedAtOrBelow(t *testing.T, p string) []string {
	t.Helper()
	var out []string
	for _, m := range hostMounts(t) {
		if m == p || strings.HasPrefix(m, p+"/") {
			out = append(out, m)
		}
	}
	return out
}

// listTree lists every path below dir, without following symlinks.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	return out
}

func cgroupMounts() []string {
	ms, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Mountpoint
	}
	return out
}

// removeCgroupParent removes the (empty) parent cgroups of the test containers.
func removeCgroupParent() {
	for _, mnt := range cgroupMounts() {
		unix.Rmdir(filepath.Join(mnt, cgroupParent))
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
