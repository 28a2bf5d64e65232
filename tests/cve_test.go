package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestExeOverwriteCVE20195736 is the host-side shape of CVE-2019-5736: while
// a container is created, its init is the runtime binary (blocked on the exec
// fifo). Whoever grabs an O_PATH handle on /proc/<init>/exe at that moment
// keeps a reference to that file after the init has exec'd the container
// program, when no ETXTBSY protects it any more. Reopening the handle for
// writing must fail, so the runtime binary on the host cannot be replaced:
// a runtime re-executes itself from a sealed copy (runc: memfd), never from
// its own file. The binary's sha256 must not change.
func TestExeOverwriteCVE20195736(t *testing.T) {
	h, dir := newTestHarness(t)
	b := h.bundle(t, dir, "b", "probe", "sleep")
	before := sha256File(t, runtimePath)
	var rtStat unix.Stat_t
	if err := unix.Stat(runtimePath, &rtStat); err != nil {
		t.Fatal(err)
	}

	r := h.runDetached(dir, filepath.Join(dir, "x.out"), filepath.Join(dir, "x.err"), "create", "--bundle", b, "x")
	if r.err != nil {
		t.Fatalf("create: %v: %s", r.err, r.stderr)
	}
	if err := h.track("x"); err != nil {
		t.Fatal(err)
	}
	pid, err := h.statePid("x")
	if err != nil {
		t.Fatal(err)
	}
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	target, _ := os.Readlink(exe)
	t.Logf("created init %d runs %s", pid, target)

	// While it is executing, the file is busy.
	if fd, err := unix.Open(exe, unix.O_WRONLY, 0); err == nil {
		unix.Close(fd)
		t.Errorf("opening %s (%s) for writing while the init runs it succeeded", exe, target)
	}

	pathFD, err := unix.Open(exe, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s O_PATH: %v", exe, err)
	}
	defer unix.Close(pathFD)

	if r := h.run("start", "x"); r.err != nil {
		t.Fatalf("start: %v: %s", r.err, r.stderr)
	}
	// Wait until the init has exec'd the probe, so that nothing runs the
	// file behind pathFD any more.
	end := time.Now().Add(deadline)
	for {
		now, _ := os.Readlink(exe)
		if strings.HasSuffix(now, "/probe") {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("init %d still runs %q after start", pid, now)
		}
		time.Sleep(20 * time.Millisecond)
	}

	reopen := fmt.Sprintf("/proc/self/fd/%d", pathFD)
	fd, err := unix.Open(reopen, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		var st unix.Stat_t
		if ferr := unix.Fstat(fd, &st); ferr != nil {
			t.Errorf("fstat: %v", ferr)
		}
		switch {
		case st.Dev == rtStat.Dev && st.Ino == rtStat.Ino:
			// Do not write: that would corrupt the runtime under test.
			t.Errorf("the runtime binary %s could be opened for writing through the init's exe handle (CVE-2019-5736)", runtimePath)
		default:
			// A copy. It must be sealed against writes.
			if _, werr := unix.Pwrite(fd, []byte{0}, 0); werr == nil {
				t.Errorf("the init's executable (%s, a copy of the runtime) is writable", target)
			} else {
				t.Logf("reopened the init's executable copy for writing, but writing fails: %v", werr)
			}
		}
		unix.Close(fd)
	} else {
		var errno unix.Errno
		if !errors.As(err, &errno) {
			t.Fatalf("open %s: %v", reopen, err)
		}
		t.Logf("reopening the init's executable for writing fails: %s", unix.ErrnoName(errno))
	}
	if after := sha256File(t, runtimePath); after != before {
		t.Errorf("the runtime binary changed: sha256 %s -> %s", before, after)
	}
	if r := h.run("delete", "--force", "x"); r.err != nil {
		t.Fatalf("delete: %v: %s", r.err, r.stderr)
	}
}
