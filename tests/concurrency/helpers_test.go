// Package concurrency_test runs cubo and cubo-runc many times at once: 50 parallel
// run, rm and pull of the same and different images and names, and 200 create/delete
// of cubo-runc with distinct IDs, 8 at a time. Afterwards no update is lost, no name is
// taken twice, and nothing leaks: mounts, cgroups, network namespaces, veths, iptables
// rules, runtime state, processes.
package concurrency_test

import (
	"testing"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

const busyboxTar = "/work/shared/images/busybox-1.38.0-musl-amd64-rootfs.tar.gz"

// The default network of these tests; no other package uses the bridge or the subnet.
const (
	testBridge = "cuboy0"
	testSubnet = "10.71.0.0/24"
)

func TestMain(m *testing.M) { hostenv.Main(m, "concurrency", testBridge) }

// env is the shared harness (tests/internal/hostenv) on this package's network.
type env = hostenv.Env

func newEnv(t *testing.T) *env {
	return hostenv.New(t, hostenv.Config{BinDir: hostenv.BinDir, BusyboxTar: busyboxTar, Bridge: testBridge, Subnet: testSubnet})
}

var (
	mountsUnder = hostenv.MountsUnder
	processesOf = hostenv.ProcessesOf
)
