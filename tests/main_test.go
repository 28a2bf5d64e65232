// Package tests holds the end-to-end integration tests of cubo-runc. They
// start real containers with a built runtime binary and check what happens
// from inside the container with the static probe in tests/cmd/probe.
//
// The runtime under test is, in order of preference:
//
//   - $CUBO_TEST_RUNTIME, any runc-compatible binary (for example
//     /usr/sbin/runc or /usr/bin/crun), which turns the suite into a
//     differential check: the same scripts must pass against runc;
//   - $CUBO_RUNC, a prebuilt cubo-runc;
//   - ./cmd/cubo-runc, built by TestMain into a temporary directory.
//
// Everything here needs root; as another user the tests skip.
package tests

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

// Set by TestMain.
var (
	// runtimePath is the absolute path of the runtime under test.
	runtimePath string
	// runtimeName is "runc", "crun" or "cubo-runc" (the base name, used by
	// script conditions for documented deviations).
	runtimeName string
	// probePath is the static probe binary copied into every rootfs.
	probePath string
	// busyboxApplets lists the applets of /bin/busybox, if present.
	busyboxApplets []string
	// setupErr, if set, fails every test (for example a build failure).
	setupErr error
	// skipReason, if set, skips every test (for example not root).
	skipReason string
)

const (
	busyboxPath = "/bin/busybox"
	imagesDir   = "/work/shared/images"
	alpineTar   = imagesDir + "/alpine-minirootfs-3.20.3-x86_64.tar.gz"
	// cgroupParent is the cgroup every test container is put under (see
	// mkbundle), so that leftovers are easy to find and remove.
	cgroupParent = "cubo-tests"
)

func TestMain(m *testing.M) {
	code := func() int {
		tmp, err := os.MkdirTemp("", "cubo-tests-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		setup(tmp)
		code := m.Run()
		removeCgroupParent()
		return code
	}()
	os.Exit(code)
}

func setup(tmp string) {
	if os.Geteuid() != 0 {
		skipReason = "integration tests start real containers and need root (run `make test` as root)"
		return
	}
	// Descriptors we inherited without O_CLOEXEC (from a shell, a CI
	// agent) would otherwise reach the runtime through every exec and make
	// the fd-leak checks depend on who started `go test`.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		setupErr = fmt.Errorf("close_range: %w", err)
		return
	}
	var err error
	if probePath, err = hostenv.BuildProbe(tmp); err != nil {
		setupErr = fmt.Errorf("build probe: %w", err)
		return
	}
	if runtimePath, err = hostenv.RuntimeUnderTest(tmp); err != nil {
		setupErr = err
		return
	}
	runtimeName = filepath.Base(runtimePath)
	if _, err := os.Stat(busyboxPath); err == nil {
		out, err := exec.Command(busyboxPath, "--list").Output()
		if err == nil {
			busyboxApplets = strings.Fields(string(out))
		}
	}
}

// requireRuntime skips or fails t according to what TestMain found.
func requireRuntime(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

// removeCgroupParent removes the (empty) cgroupParent directories that the
// runtimes create as parents of the test containers' cgroups.
func removeCgroupParent() {
	for _, mnt := range cgroupMounts() {
		os.Remove(filepath.Join(mnt, cgroupParent))
	}
}
