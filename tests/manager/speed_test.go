package manager_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestSpeedVsPodman checks the yardstick, `cubo run --rm` at most half of
// `podman run --rm` in wall time (podman driving runc), alternating the two over the
// same busybox rootfs.
// Timing comparisons do not belong in the default run: set CUBO_BENCH=1.
func TestSpeedVsPodman(t *testing.T) {
	if os.Getenv("CUBO_BENCH") == "" {
		t.Skip("set CUBO_BENCH=1 to compare with podman")
	}
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman not installed")
	}
	e := newEnv(t, "cubo-runc")
	pdir := t.TempDir()
	pargs := []string{"--root", filepath.Join(pdir, "root"), "--runroot", filepath.Join(pdir, "run")}
	if out, err := exec.Command(podman, append(pargs, "import", "-q", busyboxTar, "localhost/bb:latest")...).CombinedOutput(); err != nil {
		t.Skipf("podman import: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command(podman, append(pargs, "system", "reset", "-f")...).Run()
	})
	// This host's root lacks CAP_SYS_RESOURCE: podman's default NOFILE of 1048576 fails.
	// crun 1.8 refuses hosts with a cgroup2 controller beside v1; runc works everywhere.
	prun := append(pargs, "run", "--runtime", "/usr/sbin/runc", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "localhost/bb:latest", "true")
	timeIt := func(cmd *exec.Cmd) time.Duration {
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
		}
		return time.Since(start)
	}
	var cubo, pod []time.Duration
	for range 15 {
		cubo = append(cubo, timeIt(e.cmd("run", "-i", "--rm", "busybox", "true")))
		pod = append(pod, timeIt(exec.Command(podman, prun...)))
	}
	slices.Sort(cubo)
	slices.Sort(pod)
	c, p := cubo[len(cubo)/2], pod[len(pod)/2]
	t.Logf("median wall: cubo run --rm %v, podman run --rm %v (%.2fx)", c, p, float64(c)/float64(p))
	if float64(c) > 0.5*float64(p) {
		t.Fatalf("cubo run --rm takes %.2fx podman's time, want at most 0.5x", float64(c)/float64(p))
	}
}
