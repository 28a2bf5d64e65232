package concurrency_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

const (
	busyboxOCI = "/work/shared/images/busybox-1.38.0-musl-amd64.oci"
	alpineTar  = "/work/shared/images/alpine-minirootfs-3.20.3-x86_64.tar.gz"
)

// startRegistry runs docker-registry on loopback with busybox:latest pushed by skopeo;
// it returns "" when either is missing.
func startRegistry(t *testing.T) string {
	t.Helper()
	addr, _ := hostenv.StartRegistry(t, busyboxOCI)
	return addr
}

// parallel runs f(0..n-1) at most width at a time.
func parallel(n, width int, f func(i int)) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

type result struct {
	out, errs string
	code      int
}

// 50 cubo commands at once: pulls of one image, runs racing for one name, runs with
// distinct names on the bridge, --rm runs, and run+rm pairs of a second image.
func TestParallelCubo(t *testing.T) {
	e := newEnv(t)
	second := "busybox:latest"
	if _, err := os.Stat(alpineTar); err == nil {
		e.Ok("import", alpineTar, "alpine:latest")
		second = "alpine:latest"
	}
	addr := startRegistry(t)
	if addr == "" {
		t.Log("docker-registry or skopeo absent: no pulls in the mix")
	}
	res := make([]result, 50)
	parallel(50, 50, func(i int) {
		var args []string
		switch i % 5 {
		case 0:
			if addr != "" {
				args = []string{"pull", addr + "/busybox:latest"}
			} else {
				args = []string{"blueprint"}
			}
		case 1:
			args = []string{"run", "--network", "none", "--name", "dup", "busybox", "sleep", "100"}
		case 2:
			args = []string{"run", "--name", fmt.Sprintf("u%d", i), "busybox", "true"}
		case 3:
			args = []string{"run", "-i", "--rm", "--network", "none", second, "echo", "hello"}
		case 4:
			name := fmt.Sprintf("t%d", i)
			o, es, c := e.Run("run", "--network", "none", "--name", name, second, "sleep", "100")
			if c == 0 {
				o, es, c = e.Run("rm", "-f", name)
			}
			res[i] = result{o, es, c}
			return
		}
		o, es, c := e.Run(args...)
		res[i] = result{o, es, c}
	})
	dupWins := 0
	for i, r := range res {
		switch {
		case i%5 == 1 && r.code == 0:
			dupWins++
		case i%5 == 1:
			if !strings.Contains(r.errs, "already in use") {
				t.Errorf("losing run for name dup: exit %d %s", r.code, r.errs)
			}
		case r.code != 0:
			t.Errorf("command %d: exit %d\n%s%s", i, r.code, r.out, r.errs)
		case i%5 == 3 && r.out != "hello\n":
			t.Errorf("run --rm %d: output %q", i, r.out)
		}
	}
	if dupWins != 1 {
		t.Fatalf("%d runs got the name dup, want exactly one", dupWins)
	}
	var cs []struct{ ID, Name, Status string }
	if err := json.Unmarshal([]byte(e.Ok("ps", "-a", "--format", "json")), &cs); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	slices.Sort(names)
	want := []string{"dup"}
	for i := 2; i < 50; i += 5 {
		want = append(want, fmt.Sprintf("u%d", i))
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("containers after the storm: %v, want %v (lost or extra records)", names, want)
	}
	for _, n := range want[1:] {
		e.Ok("logs", "-f", n)
	}
	e.Check()
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	parallel(len(ids), 8, func(i int) { e.Ok("rm", "-f", ids[i]) })
	if out := e.Ok("ps", "-aq"); out != "" {
		t.Fatalf("left after rm: %s", out)
	}
	if names, _ := os.ReadDir(filepath.Join(e.Root, "containers", ".names")); len(names) != 0 {
		t.Fatalf("names left: %v", names)
	}
	e.Check()
}

// 200 cubo-runc create/delete with distinct IDs, 8 at a time; half are started and
// run `true` before the delete. Nothing is left: state, cgroups, processes, mounts.
func TestParallelRuntime(t *testing.T) {
	e := newEnv(t)
	rt := filepath.Join(hostenv.BinDir, "cubo-runc")
	bundle := e.Bundle("true")
	state := filepath.Join(e.Root, "direct-runtime")
	mountsBefore := mountsUnder("")
	runc := func(args ...string) error {
		f, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			return err
		}
		defer f.Close()
		cmd := exec.Command(rt, append([]string{"--root", state}, args...)...)
		// A created init keeps create's stdio: a file, not a pipe to wait on.
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Run(); err != nil {
			out, _ := os.ReadFile(f.Name())
			return fmt.Errorf("cubo-runc %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	errs := make([]error, 200)
	parallel(200, 8, func(i int) {
		id := fmt.Sprintf("cuboconc-%d", i)
		if err := runc("create", "--bundle", bundle, id); err != nil {
			errs[i] = err
			return
		}
		if i%2 == 0 {
			if err := runc("start", id); err != nil {
				errs[i] = err
			}
		}
		if err := runc("delete", "--force", id); err != nil && errs[i] == nil {
			errs[i] = err
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("runtime state left: %d entries", len(ents))
	}
	if cgs, _ := filepath.Glob("/sys/fs/cgroup/*/cuboconc-*"); len(cgs) != 0 {
		t.Errorf("cgroups left: %v", cgs)
	}
	for _, m := range mountsUnder("") {
		if !slices.Contains(mountsBefore, m) && strings.Contains(m, "cuboconc") {
			t.Errorf("mount left: %s", m)
		}
	}
	if ps := processesOf(state); len(ps) != 0 {
		t.Errorf("processes left: %v", ps)
	}
}
