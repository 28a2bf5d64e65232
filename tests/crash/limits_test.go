package crash_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A fork bomb under --pids-limit: the container's processes never exceed the limit,
// forks beyond it fail, the host still forks, and rm -f ends it all.
func TestForkBombPidsLimit(t *testing.T) {
	e := newEnv(t)
	const limit = 32
	id := strings.TrimSpace(e.Ok("run", "--network", "none", "--pids-limit", strconv.Itoa(limit), "--name", "bomb",
		// sleep is forked before the bomb: forked after, it could meet the
		// limit itself, and the shell, the container's init, would exit and
		// take the container (and its cgroup) with it.
		"busybox", "sh", "-c", "b() { b | b & }; sleep 100 & b; wait"))
	cg := filepath.Join("/sys/fs/cgroup/pids/cubo", id)
	if _, err := os.Stat(cg); err != nil {
		t.Skipf("no pids cgroup v1 at %s: %v", cg, err)
	}
	if b, _ := os.ReadFile(filepath.Join(cg, "pids.max")); strings.TrimSpace(string(b)) != strconv.Itoa(limit) {
		t.Fatalf("pids.max = %q, want %d", b, limit)
	}
	// The kernel counts each fork refused at the limit in pids.events.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(cg); err != nil {
			t.Fatalf("the bomb's container exited: %v", err)
		}
		if n, _ := counter(filepath.Join(cg, "pids.events"), "max"); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			cur, _ := os.ReadFile(filepath.Join(cg, "pids.current"))
			ev, _ := os.ReadFile(filepath.Join(cg, "pids.events"))
			t.Fatalf("no fork refused at the limit in 60 s: pids.current %s, pids.events %q, container %s",
				strings.TrimSpace(string(cur)), ev, inspect(e, "bomb").Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for range 20 {
		b, _ := os.ReadFile(filepath.Join(cg, "pids.current"))
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n > limit {
			t.Fatalf("pids.current %d > limit %d", n, limit)
		}
	}
	if out, err := exec.Command("/bin/true").CombinedOutput(); err != nil {
		t.Fatalf("host cannot fork during the bomb: %v %s", err, out)
	}
	e.Ok("rm", "-f", "bomb")
	if _, err := os.Stat(cg); err == nil {
		t.Fatalf("cgroup %s left after rm -f", cg)
	}
}

// A memory hog under --memory is OOM-killed: exit 137 and OOMKilled in inspect; a
// container exiting normally is not flagged.
func TestMemoryHogOOMKilled(t *testing.T) {
	e := newEnv(t)
	// busybox tail keeps the current line in memory, and /dev/zero has no newline.
	e.Ok("run", "--network", "none", "--memory", "32m", "--name", "hog", "busybox", "tail", "/dev/zero")
	e.Ok("logs", "-f", "hog")
	c := inspect(e, "hog")
	if c.Status != "stopped" || c.ExitCode != 137 || !c.OOMKilled {
		t.Fatalf("memory hog: %+v, want stopped, exit 137, OOMKilled", c)
	}
	out := e.Ok("inspect", "hog")
	if !strings.Contains(out, `"OOMKilled": true`) {
		t.Fatalf("inspect lacks \"OOMKilled\": true:\n%s", out)
	}
	e.Ok("run", "--network", "none", "--memory", "32m", "--name", "fine", "busybox", "true")
	e.Ok("logs", "-f", "fine")
	if c := inspect(e, "fine"); c.ExitCode != 0 || c.OOMKilled {
		t.Fatalf("well-behaved container: %+v", c)
	}
	// Killed with SIGKILL, not by the OOM killer: 137 but not OOMKilled.
	e.Ok("run", "--network", "none", "--memory", "32m", "--name", "killed", "busybox", "sleep", "100")
	e.Ok("stop", "-t", "0", "killed")
	if c := inspect(e, "killed"); c.OOMKilled {
		t.Fatalf("SIGKILLed container flagged OOMKilled: %+v", c)
	}
}

// A log flood is capped by --log-max-size: the log files never hold much more than
// twice the cap, and cubo logs reads across the rotation in order.
func TestLogFloodRotation(t *testing.T) {
	e := newEnv(t)
	const max = 256 << 10
	const lines = 40000 // about 2.4 MB of log records, ten times the cap
	e.Ok("run", "--network", "none", "--log-max-size", "256k", "--name", "flood", "busybox", "sh", "-c",
		fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo line $i; i=$((i+1)); done", lines))
	follow := e.Ok("logs", "-f", "flood")
	c := inspect(e, "flood")
	var total int64
	for _, p := range []string{c.Log, c.Log + ".1"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("log file %s: %v", p, err)
		}
		if fi.Size() > max {
			t.Fatalf("%s is %d bytes, cap %d", p, fi.Size(), max)
		}
		total += fi.Size()
	}
	if more, _ := filepath.Glob(c.Log + ".*"); len(more) != 1 {
		t.Fatalf("rotated files: %v, want one", more)
	}
	t.Logf("log files hold %d bytes for a %d-byte cap", total, max)
	// gaps: a follower that falls more than one rotation behind the writer
	// misses what was rotated away (docker's max-file=1 behaves the same);
	// order and the end must still hold.
	check := func(what, out string, gaps bool) {
		got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(got) < 1000 || got[len(got)-1] != fmt.Sprintf("line %d", lines-1) {
			t.Fatalf("%s: %d lines, last %q", what, len(got), got[len(got)-1])
		}
		first, err := strconv.Atoi(strings.TrimPrefix(got[0], "line "))
		if err != nil {
			t.Fatalf("%s: first line %q", what, got[0])
		}
		prev := first - 1
		for i, l := range got {
			n, err := strconv.Atoi(strings.TrimPrefix(l, "line "))
			if err != nil || n <= prev || (!gaps && n != prev+1) {
				t.Fatalf("%s: line %d is %q after line %d (gap or disorder across the rotation)", what, i, l, prev)
			}
			prev = n
		}
	}
	check("logs -f", follow, true)
	check("logs", e.Ok("logs", "flood"), false)
	if out := e.Ok("logs", "-n", "3", "flood"); out != fmt.Sprintf("line %d\nline %d\nline %d\n", lines-3, lines-2, lines-1) {
		t.Fatalf("logs -n 3: %q", out)
	}
}

// counter reads the "key N" line of a cgroup file.
func counter(path, key string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && k == key {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
