package initproc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCgroupSubsystems(t *testing.T) {
	for in, want := range map[string]string{
		"rw,cpu,cpuacct":               "cpu,cpuacct",
		"rw,xattr,name=systemd":        "name=systemd",
		"ro,memory,release_agent=/x/y": "memory",
	} {
		if got := cgroupSubsystems(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\011c`); got != "/a b\tc" {
		t.Fatalf("got %q", got)
	}
}

// TestInRoot checks that mount targets stay inside the rootfs whatever
// symlinks the rootfs holds: absolute ones, ones climbing above "/", and
// dangling ones, which runc resolves as if the rootfs were "/".
func TestInRoot(t *testing.T) {
	rootfs := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outside, filepath.Join(rootfs, "abs")))
	must(os.Symlink("../../../../../../"+outside, filepath.Join(rootfs, "climb")))
	must(os.Symlink("/does/not/exist", filepath.Join(rootfs, "dangling")))
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY, 0)
	must(err)
	defer root.Close()
	for _, dest := range []string{"/abs/x", "/climb/y", "/dangling/z", "/plain/a/b"} {
		f, err := mkTarget(root, dest, true)
		if err != nil {
			t.Fatalf("%s: %v", dest, err)
		}
		// The handle must point inside the rootfs.
		p, err := os.Readlink("/proc/self/fd/" + itoa(int(f.Fd())))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if rel, err := filepath.Rel(rootfs, p); err != nil || rel == ".." || filepath.IsAbs(rel) || len(rel) >= 2 && rel[:2] == ".." {
			t.Fatalf("%s resolved outside the rootfs: %s", dest, p)
		}
	}
	entries, err := os.ReadDir(outside)
	must(err)
	if len(entries) != 0 {
		t.Fatalf("something was created outside the rootfs: %v", entries)
	}
	// A file target (for a file bind mount) through a symlink.
	f, err := mkTarget(root, "/abs/file", false)
	must(err)
	f.Close()
	if _, err := os.Stat(filepath.Join(outside, "file")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("file target created outside the rootfs")
	}
}

func itoa(n int) string {
	b := [20]byte{}
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
