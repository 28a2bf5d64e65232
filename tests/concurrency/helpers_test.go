// Package concurrency_test runs cubo and cubo-runc many times at once: 50 parallel
// run, rm and pull of the same and different images and names, and 200 create/delete
// of cubo-runc with distinct IDs, 8 at a time. Afterwards no update is lost, no name is
// taken twice, and nothing leaks: mounts, cgroups, network namespaces, veths, iptables
// rules, runtime state, processes.
package concurrency_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

const busyboxTar = "/work/shared/images/busybox-1.38.0-musl-amd64-rootfs.tar.gz"

// The default network of these tests; no other package uses the bridge or the subnet.
const (
	testBridge = "cuboy0"
	testSubnet = "10.71.0.0/24"
)

var (
	binDir string
	rng    *rand.Rand
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skip: tests/concurrency needs root (containers, overlay mounts, cgroups)")
		os.Exit(0)
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("CUBO_CRASH_SEED"), 10, 64); err == nil {
		seed = s
	}
	fmt.Printf("concurrency tests: CUBO_CRASH_SEED=%d\n", seed)
	rng = rand.New(rand.NewPCG(seed, seed))
	dir, err := os.MkdirTemp("", "cubo-conc-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, b := range []string{"cubo", "cubo-runc"} {
		// `make test` passes the binaries it built; they are copied so that a runtime
		// dir name is always cubo-runc.
		if src := os.Getenv("CUBO_BIN"); src != "" {
			if data, err := os.ReadFile(filepath.Join(src, b)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, b), data, 0o755); err != nil {
					panic(err)
				}
				continue
			}
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "../../cmd/"+b)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("go build %s: %v\n%s", b, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/cubo")
	_, bridgeErr := os.Stat("/sys/class/net/" + testBridge)
	code := m.Run()
	// The tests' default bridge outlives their containers (as docker0 does);
	// it is this package's own, so it goes with the package's run.
	if bridgeErr != nil {
		_ = exec.Command("ip", "link", "del", testBridge).Run()
	}
	after, _ := filepath.Glob("/sys/fs/cgroup/*/cubo")
	for _, p := range after {
		if !slices.Contains(parents, p) {
			_ = os.Remove(p)
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is the shared harness (tests/internal/hostenv) on this package's network.
type env = hostenv.Env

func newEnv(t *testing.T) *env {
	return hostenv.New(t, hostenv.Config{BinDir: binDir, BusyboxTar: busyboxTar, Bridge: testBridge, Subnet: testSubnet})
}

var (
	eventually  = hostenv.Eventually
	mountsUnder = hostenv.MountsUnder
	processesOf = hostenv.ProcessesOf
)
