package network

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestTornLoopbackCache: a cubo killed while libcni wrote loopback's cached
// result leaves an empty file that made every later DEL fail ("decoding version
// from network config: unexpected end of JSON input"), so `rm -f` could never
// remove the container. Teardown drops the torn file and completes.
func TestTornLoopbackCache(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root and the CNI plugins")
	}
	if _, err := os.Stat("/usr/lib/cni/loopback"); err != nil {
		t.Skip("/usr/lib/cni/loopback missing")
	}
	c, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const id = "cubotorn-none"
	t.Cleanup(func() { _ = c.Reconcile(ctx, nil) })
	if _, err := c.Setup(ctx, SetupOptions{ID: id, Mode: Mode{Kind: ModeNone}}); err != nil {
		t.Fatal(err)
	}
	cached, _ := filepath.Glob(filepath.Join(c.root, "cache", "results", "cubo-loopback-"+id+"-lo"))
	if len(cached) != 1 {
		t.Fatalf("no cached loopback result for %s", id)
	}
	if err := os.WriteFile(cached[0], nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Teardown(ctx, id); err != nil {
		t.Fatalf("teardown with a torn cache: %v", err)
	}
	if _, err := os.Stat(cached[0]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("torn cache left: %v", err)
	}
	if _, err := os.Stat(c.attachPath(id)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("attachment record left: %v", err)
	}
}
