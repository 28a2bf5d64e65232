package tests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newTestHarness is the plain-Go-test counterpart of a script's setup: a
// private --root in a temporary directory, and a cleanup that force-deletes
// what is left and reports leaks as test errors.
func newTestHarness(t *testing.T) (*harness, string) {
	t.Helper()
	requireRuntime(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	h := newHarness(root, dir)
	t.Cleanup(func() {
		for _, p := range h.cleanup() {
			t.Error(p)
		}
	})
	return h, dir
}

// bundle makes a bundle named name under dir (see makeBundle) and registers
// it for the leak check; fixtures that are missing skip the test.
func (h *harness) bundle(t *testing.T, dir, name, kind string, args ...string) string {
	t.Helper()
	b := filepath.Join(dir, name)
	if err := makeBundle(b, kind, args); err != nil {
		if errors.Is(err, errSkip) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	h.addBundle(b)
	return b
}

// setConfig applies jsonSet edits (path, value pairs) to bundle's config.json.
func setConfig(t *testing.T, bundle string, kv ...any) {
	t.Helper()
	p := filepath.Join(bundle, "config.json")
	cfg, err := readJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if cfg, err = jsonSet(cfg, kv[i].(string), kv[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeJSON(p, cfg); err != nil {
		t.Fatal(err)
	}
}

// shareDir bind-mounts a fresh host directory at /share in the bundle's
// container, for ready files; it returns the host side.
func shareDir(t *testing.T, dir, bundle string) string {
	t.Helper()
	share := filepath.Join(dir, "share-"+filepath.Base(bundle))
	if err := os.Mkdir(share, 0o755); err != nil {
		t.Fatal(err)
	}
	setConfig(t, bundle, "mounts.-", map[string]any{
		"destination": "/share", "type": "bind", "source": share, "options": []any{"rbind", "rw"},
	})
	return share
}

// waitFile polls until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s did not appear within %v", path, deadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startBackground starts the runtime with args and its stdout and stderr in
// files under dir; the returned function waits for it and returns its exit
// status and the two outputs.
func (h *harness) startBackground(t *testing.T, dir, name string, extra []*os.File, args ...string) (*exec.Cmd, func() (int, string, string)) {
	t.Helper()
	outPath := filepath.Join(dir, name+".out")
	errPath := filepath.Join(dir, name+".err")
	fo, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	fe, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(runtimePath, append([]string{"--root", h.root}, args...)...)
	cmd.Stdout, cmd.Stderr = fo, fe
	cmd.ExtraFiles = extra
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fo.Close()
	fe.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd, func() (int, string, string) {
		t.Helper()
		var err error
		select {
		case err = <-done:
		case <-time.After(cmdTimeout):
			t.Fatalf("%s %s still running after %v", runtimeName, strings.Join(args, " "), cmdTimeout)
		}
		o, _ := os.ReadFile(outPath)
		e, _ := os.ReadFile(errPath)
		return exitCode(err), string(o), string(e)
	}
}
