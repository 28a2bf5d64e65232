package cgroups

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// waitLimit bounds every wait on the notifier; no test depends on how long
// anything takes, it only keeps a broken notifier from hanging the run.
const waitLimit = 30 * time.Second

func memEvents(oom, oomKill, max uint64) string {
	return fmt.Sprintf("low 0\nhigh 0\nmax %d\noom %d\noom_kill %d\n", max, oom, oomKill)
}

// expectEvent waits for one notification; a closed channel is a failure.
func expectEvent(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed, want an OOM notification", what)
		}
	case <-time.After(waitLimit):
		t.Fatalf("%s: no OOM notification", what)
	}
}

// expectClosed waits for the channel to be closed with no notification
// before it.
func expectClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatalf("%s: unexpected OOM notification", what)
		}
	case <-time.After(waitLimit):
		t.Fatalf("%s: channel not closed", what)
	}
}

// TestV2NotifyOOM drives the inotify watch with a fake memory.events: only a
// larger oom_kill counter is an event; other counters are not, and neither is
// the count already there when the watch starts. The "no event" checks are
// ordered, not timed: inotify delivers the memory.events change before the
// cgroup.events one that ends the watch, so a spurious event would arrive
// before the close.
func TestV2NotifyOOM(t *testing.T) {
	m, dir := fakeV2(t, map[string]string{
		"memory.events": memEvents(2, 1, 5),
		"cgroup.events": "populated 1\nfrozen 0\n",
	})
	ch, err := m.NotifyOOM(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mev := filepath.Join(dir, "memory.events")

	mustWrite(t, mev, memEvents(3, 2, 6))
	expectEvent(t, ch, "oom_kill 1 -> 2")
	mustWrite(t, mev, memEvents(4, 4, 7))
	expectEvent(t, ch, "oom_kill 2 -> 4")

	// oom and max move, oom_kill does not; then the cgroup empties.
	mustWrite(t, mev, memEvents(9, 4, 20))
	mustWrite(t, mev, memEvents(10, 4, 21))
	mustWrite(t, filepath.Join(dir, "cgroup.events"), "populated 0\nfrozen 0\n")
	expectClosed(t, ch, "other counters changed, then populated 0")
}

// TestV2NotifyOOMKillAtExit: the kill that emptied the cgroup is reported even
// when only the cgroup.events change is read.
func TestV2NotifyOOMKillAtExit(t *testing.T) {
	m, dir := fakeV2(t, map[string]string{
		"memory.events": memEvents(0, 0, 0),
		"cgroup.events": "populated 1\nfrozen 0\n",
	})
	ch, err := m.NotifyOOM(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "memory.events"), memEvents(1, 1, 1))
	mustWrite(t, filepath.Join(dir, "cgroup.events"), "populated 0\nfrozen 0\n")
	expectEvent(t, ch, "kill, then populated 0")
	expectClosed(t, ch, "after populated 0")
}

// TestV2NotifyOOMRemoved: removing the watched files ends the watch.
func TestV2NotifyOOMRemoved(t *testing.T) {
	m, dir := fakeV2(t, map[string]string{"memory.events": memEvents(0, 0, 0)})
	ch, err := m.NotifyOOM(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "memory.events"), memEvents(1, 0, 1))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, ch, "memory.events removed")
}

// TestV2NotifyOOMCancel: cancelling the context closes the channel.
func TestV2NotifyOOMCancel(t *testing.T) {
	m, _ := fakeV2(t, map[string]string{
		"memory.events": memEvents(0, 0, 0),
		"cgroup.events": "populated 1\nfrozen 0\n",
	})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := m.NotifyOOM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	expectClosed(t, ch, "context cancelled")
}

func TestNotifyOOMNeedsMemoryCgroup(t *testing.T) {
	m, _ := fakeV2(t, map[string]string{"cgroup.events": "populated 1\n"})
	if _, err := m.NotifyOOM(context.Background()); err == nil {
		t.Fatal("NotifyOOM without memory.events succeeded")
	}
	hybrid := &manager{mode: ModeHybrid, paths: map[string]string{"pids": t.TempDir(), "": t.TempDir()}}
	if _, err := hybrid.NotifyOOM(context.Background()); err == nil {
		t.Fatal("NotifyOOM without a memory hierarchy succeeded")
	}
}

func TestLookupCounter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"oom 3\noom_kill 2\n", 2, true},
		{"oom_kill 18446744073709551615", 1<<64 - 1, true},
		{"oom 3\n", 0, false},
		{"", 0, false},
		{"oom_kill \n", 0, false},
		{"oom_kill x\n", 0, false},
		{"oom_killx 1\noom_kill 7\n", 7, true},
	} {
		got, ok := lookupCounter(tc.in, "oom_kill")
		if got != tc.want || ok != tc.ok {
			t.Errorf("lookupCounter(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestRealNotifyOOMV1 puts a process that allocates without bound into a
// real v1 memory cgroup with a small limit (and no swap) and expects the
// eventfd notification; removing the cgroup then closes the channel.
func TestRealNotifyOOMV1(t *testing.T) {
	requireRealV1(t)
	tail, err := exec.LookPath("tail")
	if err != nil {
		t.Skip("skipping: no tail")
	}
	var kids []*child
	m := newReal(t, Config{Name: "oom"}, &kids)
	// `tail /dev/zero` looks for the last lines of a stream without newlines,
	// so it keeps everything it reads.
	cmd := exec.Command("/bin/sh", "-c", "read x; exec "+tail+" /dev/zero")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	kids = append(kids, c)
	if err := m.Apply(c.pid()); err != nil {
		t.Fatal(err)
	}
	limit := int64(16 << 20)
	mem := &specs.LinuxMemory{Limit: &limit}
	if fileExists(m.Paths()["memory"], "memory.memsw.limit_in_bytes") {
		mem.Swap = &limit
	}
	if err := m.Set(&specs.LinuxResources{Memory: mem}); err != nil {
		t.Fatal(err)
	}
	ch, err := m.NotifyOOM(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, ch, "tail /dev/zero under a 16 MiB limit")
	// The kernel killed it; reap it before removing the cgroup.
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Errorf("tail /dev/zero: %v, want killed by a signal", err)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	// Drain notifications that raced the kill (the kernel may report more
	// than one OOM while the task dies), then the removal must close it.
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-time.After(waitLimit):
			t.Fatal("removing the cgroup did not close the channel")
		}
	}
}
