package manager_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/manager"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

// RunOnce, the hook `cubo build` uses for RUN: a container over an overlay the caller
// mounted; the status, the output, and the writes land in the upper dir.
func TestRunOnce(t *testing.T) {
	for _, rt := range runtimes(t) {
		t.Run(filepath.Base(rt), func(t *testing.T) {
			e := newEnv(t, rt)
			st, err := images.New(e.root)
			if err != nil {
				t.Fatal(err)
			}
			img, err := st.Get(context.Background(), "busybox")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			upper, work, rootfs := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs")
			for _, d := range []string{upper, work, rootfs} {
				os.Mkdir(d, 0o755)
			}
			if err := st.MountImage(context.Background(), img, upper, work, rootfs); err != nil {
				t.Fatal(err)
			}
			defer st.Unmount(rootfs)
			runtime := rt
			if !strings.Contains(rt, "/") {
				runtime = filepath.Join(hostenv.BinDir, rt)
			}
			m, err := manager.New(e.root, manager.WithRuntime(runtime))
			if err != nil {
				t.Fatal(err)
			}
			status, out, err := m.RunOnce(context.Background(), manager.RunOnceOpts{
				Rootfs: rootfs, Args: []string{"sh", "-c", "echo $STEP in $(pwd); echo warn >&2; echo layer > /built; exit 3"},
				Env: []string{"STEP=run1"}, Cwd: "/etc",
			})
			if err != nil || status != 3 || !strings.Contains(string(out), "run1 in /etc\n") || !strings.Contains(string(out), "warn\n") {
				t.Fatalf("RunOnce: status %d err %v output %q", status, err, out)
			}
			if b, err := os.ReadFile(filepath.Join(upper, "built")); err != nil || string(b) != "layer\n" {
				t.Fatalf("write not in the upper dir: %q %v", b, err)
			}
			if _, _, err := m.RunOnce(context.Background(), manager.RunOnceOpts{Rootfs: rootfs, Args: []string{"/nonexistent"}}); err == nil {
				t.Fatal("RunOnce of a missing command: no error")
			}
			if ents, _ := os.ReadDir(filepath.Join(e.root, "runonce")); len(ents) != 0 {
				t.Fatalf("bundles left: %v", ents)
			}
			if ents, _ := os.ReadDir(filepath.Join(e.root, "runtime", filepath.Base(runtime))); len(ents) != 0 {
				t.Fatalf("runtime state left: %v", ents)
			}
		})
	}
}
