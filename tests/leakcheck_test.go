package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLeakDetector makes sure the end-of-test leak check would notice a
// container left behind: its state directory, its live init and its cgroup
// directories.
func TestLeakDetector(t *testing.T) {
	h, dir := newTestHarness(t)
	b := h.bundle(t, dir, "b", "probe", "sleep")
	r := h.runDetached(dir, dir+"/l.out", dir+"/l.err", "create", "--bundle", b, "leaky")
	if r.err != nil {
		t.Fatalf("create: %v: %s", r.err, r.stderr)
	}
	if err := h.track("leaky"); err != nil {
		t.Fatal(err)
	}
	// A mount under the work directory.
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(mnt, mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	// leaks() waits for the init to go away; make that quick by checking
	// the pieces that do not wait first.
	problems := strings.Join(h.leaksNoWait(), "\n")
	for _, want := range []string{"state left in --root", "cgroup directory left: ", "still alive", "mount left: " + mnt} {
		if !strings.Contains(problems, want) {
			t.Errorf("leak check missed %q; it reported:\n%s", want, problems)
		}
	}
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if r := h.run("delete", "--force", "leaky"); r.err != nil {
		t.Fatalf("delete: %v: %s", r.err, r.stderr)
	}
	if problems := h.leaks(true); len(problems) > 0 {
		t.Errorf("after delete --force: %s", strings.Join(problems, "\n"))
	}
}
