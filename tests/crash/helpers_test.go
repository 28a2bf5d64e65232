// Package crash_test kills cubo, its monitor and cubo-runc at random points of pull,
// run, rm, build and create, and then checks that every command still works, that
// `cubo system check` finds no damage and that nothing leaked (mounts, cgroups, links,
// iptables rules, processes). It also runs abusive containers: a fork bomb under
// --pids-limit, a memory hog under --memory, a log flood under --log-max-size.
//
// Kill points are random, but every outcome (killed before, during or after the work)
// is accepted only when the state afterwards is consistent, so the tests do not depend
// on timing. Set CUBO_CRASH_SEED to replay a run.
package crash_test

import (
	"testing"
	"time"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

const busyboxTar = "/work/shared/images/busybox-1.38.0-musl-amd64-rootfs.tar.gz"

// The default network of these tests; no other package uses the bridge or the subnet.
const (
	testBridge = "cubox0"
	testSubnet = "10.72.0.0/24"
)

func TestMain(m *testing.M) { hostenv.Main(m, "crash", testBridge) }

// env is the shared harness (tests/internal/hostenv) on this package's network.
type env = hostenv.Env

func newEnv(t *testing.T) *env {
	return hostenv.New(t, hostenv.Config{BinDir: hostenv.BinDir, BusyboxTar: busyboxTar, Bridge: testBridge, Subnet: testSubnet})
}

func randDur(max time.Duration) time.Duration { return hostenv.RandDur(hostenv.Rng, max) }

var (
	eventually  = hostenv.Eventually
	processesOf = hostenv.ProcessesOf
)
