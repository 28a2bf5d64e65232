package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestExecTTY runs `exec --tty --console-socket S -d` in a running
// container: the pty master arrives over the socket and the exec'd
// process's stdio is that pty; and a foreground `exec -t` without a socket,
// where the runtime allocates the pty itself.
func TestExecTTY(t *testing.T) {
	h, dir := newTestHarness(t)
	h.runSleeper(t, dir, "x")

	t.Run("console-socket", func(t *testing.T) {
		rcv := newConsoleReceiver(t, dir)
		pidFile := filepath.Join(dir, "exec.pid")
		r := h.runDetached(dir, filepath.Join(dir, "e.out"), filepath.Join(dir, "e.err"),
			"exec", "--tty", "--console-socket", rcv.path, "--detach", "--pid-file", pidFile,
			"x", "/probe", "tty", "+", "echo", "hello-exec-pty")
		if r.err != nil {
			t.Fatalf("exec -t -d: %v: %s", r.err, r.stderr)
		}
		master, _ := rcv.wait(t)
		if _, err := os.Stat(pidFile); err != nil {
			t.Errorf("pid file: %v", err)
		}
		out := readAll(t, master)
		for _, want := range []string{
			`^tty 0 /dev/pts/\d+ isatty=true$`,
			`^tty 1 /dev/pts/\d+ isatty=true$`,
			`^tty 2 /dev/pts/\d+ isatty=true$`,
			`^ctty ok$`,
			`^hello-exec-pty$`,
		} {
			if !regexp.MustCompile(`(?m)` + want).MatchString(out) {
				t.Errorf("pty output lacks %s:\n%s", want, out)
			}
		}
	})

	t.Run("socket-without-tty", func(t *testing.T) {
		r := h.run("exec", "--console-socket", filepath.Join(dir, "nobody.sock"), "-d", "x", "/probe", "pid")
		if r.code != 255 && r.code != 1 {
			t.Errorf("exec --console-socket without --tty: exit status %d, want 255: %s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "cannot use console socket if runc will not detach or allocate tty") {
			t.Errorf("stderr: %s", r.stderr)
		}
	})

	t.Run("tty-detach-without-socket", func(t *testing.T) {
		r := h.run("exec", "--tty", "-d", "x", "/probe", "pid")
		if r.code == 0 {
			t.Fatalf("exec -t -d without --console-socket succeeded")
		}
		if !strings.Contains(r.stderr, "cannot allocate tty if runc will detach without setting console socket") {
			t.Errorf("stderr: %s", r.stderr)
		}
	})

	t.Run("foreground", func(t *testing.T) {
		// No socket, not detached: the runtime makes the pty and copies
		// its output to our stdout.
		if runtimeName == "runc" {
			t.Skip("runc opens the caller's /dev/tty, and the test has no controlling terminal")
		}
		r := h.run("exec", "--tty", "x", "/probe", "tty", "+", "echo", "hello-fg")
		if r.err != nil {
			t.Fatalf("exec -t: %v: %s", r.err, r.stderr)
		}
		out := strings.ReplaceAll(r.stdout, "\r\n", "\n")
		for _, want := range []string{`^tty 1 /dev/pts/\d+ isatty=true$`, `^hello-fg$`} {
			if !regexp.MustCompile(`(?m)` + want).MatchString(out) {
				t.Errorf("output lacks %s:\n%s", want, out)
			}
		}
	})

	if r := h.run("delete", "--force", "x"); r.err != nil {
		t.Fatalf("delete: %v: %s", r.err, r.stderr)
	}
}

// TestExecPreserveFDs passes fd 3 to `exec --preserve-fds 1`: the exec'd
// process sees it as fd 3 and nothing beyond it.
func TestExecPreserveFDs(t *testing.T) {
	h, dir := newTestHarness(t)
	h.runSleeper(t, dir, "x")
	extra := filepath.Join(dir, "preserved-exec.txt")
	if err := os.WriteFile(extra, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(extra)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"preserved", []string{"exec", "--preserve-fds", "1", "x", "/probe", "fds"}, true},
		{"not-preserved", []string{"exec", "x", "/probe", "fds"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, wait := h.startBackground(t, dir, tc.name, []*os.File{f}, tc.args...)
			code, out, errOut := wait()
			if code != 0 {
				t.Fatalf("exit status %d: %s", code, errOut)
			}
			if got := regexp.MustCompile(`(?m)^fd 3 .*preserved-exec\.txt$`).MatchString(out); got != tc.want {
				t.Errorf("fd 3 preserved: %v, want %v:\n%s", got, tc.want, out)
			}
			if regexp.MustCompile(`(?m)^fd ([4-9]|[1-9][0-9]+) `).MatchString(out) {
				t.Errorf("more fds than preserved:\n%s", out)
			}
			if !tc.want && regexp.MustCompile(`(?m)^fd 3 `).MatchString(out) {
				t.Errorf("an fd reached the process without --preserve-fds:\n%s", out)
			}
		})
	}
	if r := h.run("delete", "--force", "x"); r.err != nil {
		t.Fatalf("delete: %v: %s", r.err, r.stderr)
	}
}

// TestExecNotUTF8: words and --env values that are not UTF-8 reach the
// process, as U+FFFD, as with runc (checked: runc 1.1.5 prints "caf\uFFFD"
// for `exec ID echo caf\xe9`): an exec'd process travels to the container's
// side as OCI JSON, whose strings are UTF-8 text. Nothing is refused or
// shifted: the other words arrive unchanged and in place.
func TestExecNotUTF8(t *testing.T) {
	h, dir := newTestHarness(t)
	h.runSleeper(t, dir, "x")
	r := h.run("exec", "--env", "V=\xff", "x", "/probe", "args", "caf\xe9", "-x", "+", "env")
	if r.err != nil {
		t.Fatalf("exec: %v: %s", r.err, r.stderr)
	}
	for _, want := range []string{"arg 2 caf\uFFFD\n", "arg 3 -x\n", "arg 4 +\n", "env V=\uFFFD\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%q", want, r.stdout)
		}
	}
	if r := h.run("delete", "--force", "x"); r.err != nil {
		t.Fatalf("delete: %v: %s", r.err, r.stderr)
	}
}

// runSleeper runs container id (the probe, sleeping) detached and tracks its
// init for the leak checks.
func (h *harness) runSleeper(t *testing.T, dir, id string) {
	t.Helper()
	b := h.bundle(t, dir, "b", "probe", "sleep")
	if r := h.runDetached(dir, filepath.Join(dir, id+".out"), filepath.Join(dir, id+".err"), "run", "-d", "--bundle", b, id); r.err != nil {
		t.Fatalf("run -d: %v: %s", r.err, r.stderr)
	}
	if err := h.track(id); err != nil {
		t.Fatal(err)
	}
}
