package manager_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/manager"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

// cubo killed after creating the container but before its monitor took over: the next
// command finds a "created" record nobody owns and records it as stopped, with why;
// rm then removes it completely.
func TestCreationInterrupted(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	st, err := images.New(e.root)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manager.New(e.root, manager.WithStore(st), manager.WithRuntime(filepath.Join(hostenv.BinDir, "cubo-runc")))
	if err != nil {
		t.Fatal(err)
	}
	cr, err := m.Create(context.Background(), manager.CreateOpts{Image: "busybox", Name: "halfway", Command: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	cr.Release() // what SIGKILL of cubo at this point does to the lock
	c := e.inspect("halfway")
	if c.Status != "stopped" || c.ExitCode != -1 || c.Finished.IsZero() || !strings.Contains(c.Error, "creation interrupted") {
		t.Fatalf("reconciled record: %+v", c)
	}
	e.ok("rm", "halfway")
	e.assertClean([]string{c.ID})
}

// rmb refuses an image a container uses; --force keeps the container working.
func TestRmbInUse(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	e.ok("run", "--name", "user", "busybox", "true")
	e.waitExit("user")
	e.fails("used by a container", "rmb", "busybox")
	e.ok("rm", "user")
	e.ok("rmb", "busybox")
}

// Names win over ID prefixes: a name that happens to be a prefix of another container's
// ID is free to take and resolves to its own container.
func TestNameThatLooksLikeAPrefix(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	id := strings.TrimSpace(e.ok("run", "busybox", "true"))
	e.waitExit(id)
	other := strings.TrimSpace(e.ok("run", "--name", id[:3], "busybox", "true"))
	e.waitExit(other)
	if c := e.inspect(id[:3]); c.ID != other {
		t.Fatalf("name %s resolved to %s, want %s", id[:3], c.ID, other)
	}
	if c := e.inspect(id[:4]); c.ID != id {
		t.Fatalf("prefix %s resolved to %s, want %s", id[:4], c.ID, id)
	}
}
