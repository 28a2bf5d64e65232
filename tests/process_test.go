package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
)

// TestSignalForwarding sends signals to a foreground `run` and checks that
// the container process got them: it traps the signal and exits with a code
// that proves which one arrived.
func TestSignalForwarding(t *testing.T) {
	h, dir := newTestHarness(t)
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
		code int
	}{
		{syscall.SIGTERM, "TERM", 42},
		{syscall.SIGUSR1, "USR1", 43},
		{syscall.SIGHUP, "HUP", 44},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := h.bundle(t, dir, "b-"+tc.name, "probe")
			share := shareDir(t, dir, b)
			setConfig(t, b, "process.args", stringsToAny([]string{"/probe", "trap", tc.name, fmt.Sprint(tc.code), "/share/ready"}))
			cmd, wait := h.startBackground(t, dir, "sig-"+tc.name, nil, "run", "--bundle", b, "sig-"+tc.name)
			waitFile(t, filepath.Join(share, "ready"))
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := wait()
			if code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errOut)
			}
			if want := "trap got SIG" + tc.name; !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(out) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		})
	}
}

// TestRunKilled checks that a foreground `run` whose container is killed
// by `kill` exits with 128+signal.
func TestRunKilled(t *testing.T) {
	h, dir := newTestHarness(t)
	b := h.bundle(t, dir, "b", "probe")
	share := shareDir(t, dir, b)
	setConfig(t, b, "process.args", stringsToAny([]string{"/probe", "sleep", "/share/ready"}))
	_, wait := h.startBackground(t, dir, "killed", nil, "run", "--bundle", b, "killed")
	waitFile(t, filepath.Join(share, "ready"))
	if r := h.run("kill", "killed", "KILL"); r.err != nil {
		t.Fatalf("kill: %v: %s", r.err, r.stderr)
	}
	code, out, errOut := wait()
	if code != 128+9 {
		t.Errorf("exit status %d, want 137\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(h.root, "killed")); err == nil {
		t.Errorf("run left its state directory behind")
	}
}

// TestPreserveFDs passes fd 3 to the runtime: with --preserve-fds 1 the
// container sees it as fd 3, without it the container must not get it.
func TestPreserveFDs(t *testing.T) {
	h, dir := newTestHarness(t)
	b := h.bundle(t, dir, "b", "probe", "fds")
	extraPath := filepath.Join(dir, "preserved.txt")
	if err := os.WriteFile(extraPath, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func() *os.File {
		f, err := os.Open(extraPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	fd3 := regexp.MustCompile(`(?m)^fd 3 .*preserved\.txt$`)
	anyExtra := regexp.MustCompile(`(?m)^fd ([3-9]|[1-9][0-9]+) `)

	t.Run("run", func(t *testing.T) {
		_, wait := h.startBackground(t, dir, "pf1", []*os.File{open()}, "run", "--preserve-fds", "1", "--bundle", b, "pf1")
		code, out, errOut := wait()
		if code != 0 {
			t.Fatalf("exit status %d: %s", code, errOut)
		}
		if !fd3.MatchString(out) {
			t.Errorf("fd 3 not preserved:\n%s", out)
		}
		if regexp.MustCompile(`(?m)^fd ([4-9]|[1-9][0-9]+) `).MatchString(out) {
			t.Errorf("more fds than preserved:\n%s", out)
		}
	})
	t.Run("create", func(t *testing.T) {
		_, wait := h.startBackground(t, dir, "pf2", []*os.File{open()}, "create", "--preserve-fds", "1", "--bundle", b, "pf2")
		if code, _, errOut := wait(); code != 0 {
			t.Fatalf("create: exit status %d: %s", code, errOut)
		}
		if err := h.track("pf2"); err != nil {
			t.Fatal(err)
		}
		if r := h.run("start", "pf2"); r.err != nil {
			t.Fatalf("start: %v: %s", r.err, r.stderr)
		}
		if err := h.waitState("pf2", "stopped"); err != nil {
			t.Fatal(err)
		}
		out, _ := os.ReadFile(filepath.Join(dir, "pf2.out"))
		if !fd3.Match(out) {
			t.Errorf("fd 3 not preserved:\n%s", out)
		}
		if r := h.run("delete", "pf2"); r.err != nil {
			t.Fatalf("delete: %v: %s", r.err, r.stderr)
		}
	})
	t.Run("not-preserved", func(t *testing.T) {
		_, wait := h.startBackground(t, dir, "pf3", []*os.File{open()}, "run", "--bundle", b, "pf3")
		code, out, errOut := wait()
		if code != 0 {
			t.Fatalf("exit status %d: %s", code, errOut)
		}
		if anyExtra.MatchString(out) {
			t.Errorf("an fd the runtime inherited without --preserve-fds reached the container:\n%s", out)
		}
	})
}
