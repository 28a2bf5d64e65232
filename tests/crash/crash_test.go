package crash_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

const busyboxOCI = "/work/shared/images/busybox-1.38.0-musl-amd64.oci"

// startRegistry runs Debian's docker-registry on a free loopback port with busybox
// pushed as busybox:latest (by skopeo from the shared OCI layout); it is stopped by PID.
func startRegistry(t *testing.T) string {
	t.Helper()
	addr, missing := hostenv.StartRegistry(t, busyboxOCI)
	if addr == "" {
		t.Skip(missing + "; skipping")
	}
	return addr
}

// cubo pull killed anywhere: the store stays consistent and the next pull completes.
func TestKillPull(t *testing.T) {
	addr := startRegistry(t)
	e := newEnv(t)
	ref := addr + "/busybox:latest"
	d := e.Timed("pull", ref)
	e.Ok("rmb", ref)
	for i := range 8 {
		// Half the rounds start from an empty store, half resume a killed pull.
		if i%2 == 0 {
			_, _, _ = e.Run("rmb", ref)
		}
		killed := e.KillAfter(randDur(d), "pull", ref)
		t.Logf("round %d: killed=%v", i, killed)
		e.Check()
		e.Ok("pull", ref)
		e.Check()
		out := e.Ok("run", "-i", "--rm", "--network", "none", ref, "echo", "ran")
		if out != "ran\n" {
			t.Fatalf("run after pull: %q", out)
		}
	}
	if out, _, code := e.Run("system", "check"); code != 0 || strings.Contains(out, "tmp/") {
		t.Fatalf("final check: exit %d\n%s", code, out)
	}
}

// cubo run killed anywhere: the container is either running (its monitor took over),
// or recorded stopped; rm -f removes it either way and the name is free again.
func TestKillRun(t *testing.T) {
	e := newEnv(t)
	d := e.Timed("run", "--name", "probe", "busybox", "sleep", "100")
	e.Ok("rm", "-f", "probe")
	for i := range 8 {
		name := fmt.Sprintf("r%d", i)
		netw := "none"
		if i%2 == 1 {
			netw = "bridge"
		}
		killed := e.KillAfter(randDur(d), "run", "--network", netw, "--name", name, "busybox", "sleep", "100")
		ps := e.Ok("ps", "-a", "--format", "json")
		var cs []struct {
			Name, Status, Error string
		}
		if err := json.Unmarshal([]byte(ps), &cs); err != nil {
			t.Fatalf("ps after kill: %v\n%s", err, ps)
		}
		state := "absent"
		for _, c := range cs {
			if c.Name == name {
				state = c.Status + " " + c.Error
			}
		}
		t.Logf("round %d (%s): killed=%v: %s", i, netw, killed, state)
		e.Check()
		if state != "absent" {
			if _, errs, code := e.Run("rm", "-f", name); code != 0 {
				t.Fatalf("rm -f %s: %s", name, errs)
			}
		}
		e.Check()
		e.Ok("run", "--network", netw, "--name", name, "busybox", "true")
		e.Ok("logs", "-f", name)
		e.Ok("rm", name)
	}
}

// cubo rm -f killed anywhere: the container is either still there (and a second rm
// removes it) or gone entirely, never half there.
func TestKillRm(t *testing.T) {
	e := newEnv(t)
	e.Ok("run", "--name", "probe", "busybox", "sleep", "100")
	d := e.Timed("rm", "-f", "probe")
	for i := range 8 {
		name := fmt.Sprintf("k%d", i)
		netw := []string{"none", "bridge"}[i%2]
		e.Ok("run", "--network", netw, "--name", name, "busybox", "sleep", "100")
		killed := e.KillAfter(randDur(d), "rm", "-f", name)
		_, errs, code := e.Run("inspect", name)
		t.Logf("round %d (%s): killed=%v, inspect exit %d", i, netw, killed, code)
		if code != 0 && !strings.Contains(errs, "no such container") {
			t.Fatalf("inspect after killed rm: %s", errs)
		}
		e.Ok("ps", "-a")
		e.Check()
		if code == 0 {
			e.Ok("rm", "-f", name)
		}
		e.Check()
		e.Ok("run", "--network", "none", "--name", name, "busybox", "true")
		e.Ok("logs", "-f", name)
		e.Ok("rm", name)
	}
}

// cubo build killed anywhere, even while a RUN step runs: the next build collects what
// it left (the step's container included) and succeeds; nothing leaks.
func TestKillBuild(t *testing.T) {
	e := newEnv(t)
	ctx := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctx, "Cubofile"), []byte("FROM busybox\nRUN sleep 0.2 && echo one > /one\nCOPY f /f\nRUN sleep 0.2 && cat /one /f > /both\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "f"), []byte("two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := e.Timed("build", "--no-cache", "-t", "built", ctx)
	for i := range 5 {
		killed := e.KillAfter(randDur(d), "build", "--no-cache", "-t", "built", ctx)
		t.Logf("round %d: killed=%v", i, killed)
		e.Ok("ps", "-a")
		e.Ok("build", "-t", "built", ctx)
		e.Check()
		if out := e.Ok("run", "-i", "--rm", "--network", "none", "built", "cat", "/both"); out != "one\ntwo\n" {
			t.Fatalf("built image: %q", out)
		}
	}
	eventually(t, "the killed builds' runtimes to exit", func() bool { return len(processesOf(e.Root)) == 0 })
}

// The monitor killed while its container runs: the container runs on, flagged; stop
// and rm work; killed again with its container dead, the record becomes stopped.
func TestKillMonitor(t *testing.T) {
	e := newEnv(t)
	for i, netw := range []string{"none", "bridge"} {
		name := fmt.Sprintf("m%d", i)
		e.Ok("run", "--network", netw, "--name", name, "busybox", "sleep", "100")
		c := inspect(e, name)
		if err := syscall.Kill(c.Monitor, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, "monitor gone", func() bool { return !alive(c.Monitor) })
		c = inspect(e, name)
		if c.Status != "running" || !strings.Contains(c.Error, "monitor died") {
			t.Fatalf("after monitor kill: %+v", c)
		}
		e.Check()
		if i == 0 {
			e.Ok("stop", "-t", "1", name)
		} else {
			// The container dies unseen: the next command records it stopped.
			if err := syscall.Kill(c.Pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			eventually(t, "container gone", func() bool { return inspect(e, name).Status == "stopped" })
		}
		if c = inspect(e, name); c.Status != "stopped" {
			t.Fatalf("after stop: %+v", c)
		}
		e.Check()
		e.Ok("rm", name)
	}
}

// cubo-runc killed during create, directly and under cubo: delete --force and rm -f
// clean up, and the next create works.
func TestKillRuntimeCreate(t *testing.T) {
	e := newEnv(t)
	rt := filepath.Join(hostenv.BinDir, "cubo-runc")
	bundle := e.Bundle("sleep", "100")
	state := filepath.Join(e.Root, "direct-runtime")
	logs := t.TempDir()
	n := 0
	// runc runs cubo-runc with its output in a file: a created container's init keeps
	// create's stdio open, so a pipe would not end before the container does.
	runc := func(args ...string) *outCmd {
		n++
		f, err := os.Create(filepath.Join(logs, strconv.Itoa(n)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(rt, append([]string{"--root", state}, args...)...)
		cmd.Stdout, cmd.Stderr = f, f
		return &outCmd{Cmd: cmd, f: f}
	}
	start := time.Now()
	if out, err := runc("create", "--bundle", bundle, "probe").CombinedOutput(); err != nil {
		t.Fatalf("create: %v %s", err, out)
	}
	d := time.Since(start)
	if out, err := runc("delete", "--force", "probe").CombinedOutput(); err != nil {
		t.Fatalf("delete: %v %s", err, out)
	}
	cgroupsBefore, _ := filepath.Glob("/sys/fs/cgroup/*/crash*")
	for i := range 10 {
		id := fmt.Sprintf("crash%d", i)
		cmd := runc("create", "--bundle", bundle, id)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(randDur(d))
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cmd.f.Close()
		out, err := runc("delete", "--force", id).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "does not exist") {
			t.Fatalf("round %d: delete --force after a killed create: %v %s", i, err, out)
		}
		if _, err := os.Stat(filepath.Join(state, id)); err == nil {
			t.Fatalf("round %d: state of %s left after delete --force", i, id)
		}
		// The ID is free again and works.
		if out, err := runc("create", "--bundle", bundle, id).CombinedOutput(); err != nil {
			t.Fatalf("round %d: create again: %v %s", i, err, out)
		}
		if out, err := runc("delete", "--force", id).CombinedOutput(); err != nil {
			t.Fatalf("round %d: delete: %v %s", i, err, out)
		}
	}
	cgroupsAfter, _ := filepath.Glob("/sys/fs/cgroup/*/crash*")
	for _, c := range cgroupsAfter {
		if !contains(cgroupsBefore, c) {
			t.Errorf("left behind: cgroup %s", c)
		}
	}
	// Under cubo: a runtime whose create is killed at a random point.
	wrapper := filepath.Join(t.TempDir(), "cubo-runc")
	script := fmt.Sprintf(`#!/bin/sh
d=$(cat %s)
case "$d: $* " in
none:*) ;;
*" create "*)
	%s "$@" &
	pid=$!
	sleep "$d"
	kill -9 $pid 2>/dev/null
	wait $pid
	exit $?
	;;
esac
exec %s "$@"
`, filepath.Join(e.Root, "delay"), rt, rt)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		delay := randDur(d)
		if err := os.WriteFile(filepath.Join(e.Root, "delay"), []byte(fmt.Sprintf("%.3f", delay.Seconds())), 0o644); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("w%d", i)
		_, errs, code := e.Run("--runtime", wrapper, "run", "--network", "none", "--name", name, "busybox", "sleep", "100")
		t.Logf("round %d: delay %v: run exit %d %s", i, delay, code, strings.TrimSpace(errs))
		e.Ok("--runtime", wrapper, "rm", "-f", name)
		e.Check()
		if err := os.WriteFile(filepath.Join(e.Root, "delay"), []byte("none"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.Ok("--runtime", wrapper, "run", "--network", "none", "--name", name, "busybox", "true")
		e.Ok("logs", "-f", name)
		e.Ok("--runtime", wrapper, "rm", name)
	}
}

// outCmd is a command whose output goes to a file.
type outCmd struct {
	*exec.Cmd
	f *os.File
}

// CombinedOutput runs the command and returns what it wrote.
func (c *outCmd) CombinedOutput() ([]byte, error) {
	err := c.Run()
	c.f.Close()
	b, _ := os.ReadFile(c.f.Name())
	return b, err
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// record is the part of inspect's JSON these tests read.
type record struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	ExitCode  int    `json:"exit_code"`
	Error     string `json:"error"`
	Pid       int    `json:"pid"`
	Monitor   int    `json:"monitor_pid"`
	OOMKilled bool   `json:"OOMKilled"`
	Log       string `json:"log_path"`
}

func inspect(e *env, ref string) record {
	e.T.Helper()
	var rs []record
	if err := json.Unmarshal([]byte(e.Ok("inspect", ref)), &rs); err != nil || len(rs) != 1 {
		e.T.Fatalf("inspect %s: %v", ref, err)
	}
	return rs[0]
}
