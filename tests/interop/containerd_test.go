package interop

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// containerd is a private containerd: its own root, state, sockets and opt
// dir under dir, stopped by PID.
type containerd struct {
	dir  string
	sock string
	d    *daemon
}

// startContainerd writes a config (extra is appended verbatim, e.g. the
// CRI plugin section) and starts containerd until `ctr version` answers.
func startContainerd(dir string, cri bool, extra string) (*containerd, error) {
	c := &containerd{dir: dir, sock: filepath.Join(dir, "c.sock")}
	disabled := `["io.containerd.grpc.v1.cri"]`
	if cri {
		disabled = `[]`
	}
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = %[3]s

[grpc]
  address = %[4]q

[ttrpc]
  address = %[5]q

[debug]
  address = %[6]q
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = %[7]q
%[8]s
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, c.sock, c.sock+".ttrpc",
		filepath.Join(dir, "debug.sock"), filepath.Join(dir, "opt"), extra)
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	d, err := startDaemon("containerd", filepath.Join(dir, "containerd.log"), nil, "containerd", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	c.d = d
	err = d.waitReady(func() error {
		if r := runCmd(nil, nil, "ctr", "--address", c.sock, "version"); r.err != nil {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	if err != nil {
		d.stop()
		return nil, err
	}
	return c, nil
}

// stop stops containerd by PID and kills the shims it left (their command
// line names our socket).
func (c *containerd) stop() []string {
	if c == nil {
		return nil
	}
	c.d.stop()
	return killByCmdline(c.sock)
}

func TestContainerd(t *testing.T) {
	requireEngine(t, "containerd", "containerd", "ctr", "skopeo")
	ns := fmt.Sprintf("cuboit-ctr-%d", os.Getpid())
	dir := mkTemp(t, "ci.")
	before := takeSnapshot(dir, ns)
	runcRoot := filepath.Join(dir, "runc-root")
	fifoDir := filepath.Join(dir, "fifo")
	var c *containerd
	ctr := func(args ...string) []string {
		return append([]string{"--address", c.sock, "--namespace", ns}, args...)
	}
	runFlags := []string{"--runc-binary", runtimeBin, "--runc-root", runcRoot, "--fifo-dir", fifoDir}
	var once sync.Once
	teardown := func() {
		once.Do(func() {
			start := time.Now()
			defer func() { t.Logf("teardown took %v", time.Since(start)) }()
			if c != nil {
				// Remove what a failed check left, through containerd first.
				for _, id := range []string{"c-run", "c-exit", "c-d", "c-tty", "c-missing"} {
					runCmd(nil, nil, "ctr", ctr("task", "kill", "-s", "SIGKILL", id)...)
					runCmd(nil, nil, "ctr", ctr("task", "rm", "-f", id)...)
					runCmd(nil, nil, "ctr", ctr("containers", "rm", id)...)
				}
				t.Logf("teardown: ctr cleanup %v", time.Since(start))
				if k := c.stop(); len(k) > 0 {
					t.Logf("killed leftover processes: %v", k)
				}
				t.Logf("teardown: containerd stopped %v", time.Since(start))
			}
			removeCgroups(ns)
			t.Logf("teardown: cgroups removed %v", time.Since(start))
			removeTemp(dir)
		})
	}
	defer teardown()

	if !check(t, "containerd/daemon-start", func(t *testing.T) {
		var err error
		if c, err = startContainerd(dir, false, ""); err != nil {
			t.Fatal(err)
		}
	}) {
		teardown()
		leakCheck(t, "containerd/no-leaks", before, dir, ns, scope{})
		return
	}

	check(t, "containerd/image-import", func(t *testing.T) {
		bb, _, err := imageArchives()
		if err != nil {
			t.Fatal(err)
		}
		must(t, nil, "ctr", ctr("images", "import", bb)...)
		if out := must(t, nil, "ctr", ctr("images", "ls", "-q")...); !strings.Contains(out, busyboxRef) {
			t.Fatalf("image %s not listed:\n%s", busyboxRef, out)
		}
	})

	check(t, "containerd/run-rm-output", func(t *testing.T) {
		args := append(append([]string{"run", "--rm"}, runFlags...), busyboxRef, "c-run", "sh", "-c", "echo hello-from-cubo; cat /proc/self/cgroup")
		out := must(t, nil, "ctr", ctr(args...)...)
		if !strings.Contains(out, "hello-from-cubo") {
			t.Fatalf("output %q lacks hello-from-cubo", out)
		}
		if !strings.Contains(out, "/"+ns+"/c-run") {
			t.Errorf("container not in cgroup /%s/c-run:\n%s", ns, out)
		}
	})

	check(t, "containerd/run-exit-code", func(t *testing.T) {
		args := append(append([]string{"run", "--rm"}, runFlags...), busyboxRef, "c-exit", "sh", "-c", "exit 7")
		r := runCmd(nil, nil, "ctr", ctr(args...)...)
		if r.code != 7 {
			t.Fatalf("want exit 7\n%s", r)
		}
	})

	check(t, "containerd/run-missing-executable", func(t *testing.T) {
		args := append(append([]string{"run", "--rm"}, runFlags...), busyboxRef, "c-missing", "/no/such/binary")
		r := runCmd(nil, nil, "ctr", ctr(args...)...)
		if r.err == nil || !strings.Contains(r.stderr, "no such file or directory") && !strings.Contains(r.stderr, "executable file not found") {
			t.Fatalf("want a create failure naming the missing file\n%s", r)
		}
		runCmd(nil, nil, "ctr", ctr("containers", "rm", "c-missing")...)
	})

	taskStatus := func(id string) (string, string) {
		out := runCmd(nil, nil, "ctr", ctr("task", "ls")...).stdout
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 3 && f[0] == id {
				return f[1], f[2]
			}
		}
		return "", ""
	}
	waitStatus := func(t *testing.T, id, want string) string {
		t.Helper()
		var pid string
		if err := waitFor(id+" "+want, 60*time.Second, func() error {
			p, st := taskStatus(id)
			pid = p
			if st != want {
				return fmt.Errorf("status %q", st)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return pid
	}

	var pid string
	detached := check(t, "containerd/run-detached", func(t *testing.T) {
		args := append(append([]string{"run", "-d"}, runFlags...), busyboxRef, "c-d",
			"sh", "-c", "trap 'exit 7' TERM; while true; do sleep 1; done")
		must(t, nil, "ctr", ctr(args...)...)
		pid = waitStatus(t, "c-d", "RUNNING")
	})

	check(t, "containerd/task-exec", func(t *testing.T) {
		need(t, detached, "containerd/run-detached")
		out := must(t, nil, "ctr", ctr("task", "exec", "--exec-id", "e1", "c-d", "sh", "-c", "echo exec-ok; exit 0")...)
		if !strings.Contains(out, "exec-ok") {
			t.Fatalf("exec output %q", out)
		}
		r := runCmd(nil, nil, "ctr", ctr("task", "exec", "--exec-id", "e2", "c-d", "sh", "-c", "exit 5")...)
		if r.code != 5 {
			t.Fatalf("exec exit status: want 5\n%s", r)
		}
	})

	check(t, "containerd/task-ps", func(t *testing.T) {
		need(t, detached, "containerd/run-detached")
		out := must(t, nil, "ctr", ctr("task", "ps", "c-d")...)
		if !hasPIDLine(out, pid) {
			t.Fatalf("init pid %s not listed:\n%s", pid, out)
		}
	})

	check(t, "containerd/cgroups-path", func(t *testing.T) {
		need(t, detached, "containerd/run-detached")
		for _, ctl := range []string{"memory", "pids", "freezer", "cpu"} {
			p := filepath.Join("/sys/fs/cgroup", ctl, ns, "c-d", "cgroup.procs")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("cgroupsPath /%s/c-d: %v", ns, err)
				continue
			}
			if !hasPIDLine(string(b), pid) {
				t.Errorf("%s does not hold the init pid %s: %q", p, pid, b)
			}
		}
	})

	check(t, "containerd/task-metrics", func(t *testing.T) {
		need(t, detached, "containerd/run-detached")
		skipUnlessCgroupsLoadable(t)
		out := must(t, nil, "ctr", ctr("task", "metrics", "--format", "json", "c-d")...)
		var m struct {
			Pids struct {
				Current uint64 `json:"current"`
			} `json:"pids"`
			Memory struct {
				Usage struct {
					Usage uint64 `json:"usage"`
				} `json:"usage"`
			} `json:"memory"`
		}
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("metrics json: %v\n%s", err, out)
		}
		if m.Pids.Current < 1 || m.Memory.Usage.Usage == 0 {
			t.Fatalf("metrics show no pids/memory for the container:\n%s", out)
		}
	})

	check(t, "containerd/pause-resume", func(t *testing.T) {
		need(t, detached, "containerd/run-detached")
		must(t, nil, "ctr", ctr("task", "pause", "c-d")...)
		waitStatus(t, "c-d", "PAUSED")
		b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/freezer", ns, "c-d", "freezer.state"))
		if strings.TrimSpace(string(b)) != "FROZEN" {
			t.Errorf("freezer.state %q, want FROZEN", b)
		}
		must(t, nil, "ctr", ctr("task", "resume", "c-d")...)
		waitStatus(t, "c-d", "RUNNING")
	})

	check(t, "containerd/task-kill-delete", func(t *testing.T) {
		need(t, detached, "containerd/run-detached")
		must(t, nil, "ctr", ctr("task", "kill", "c-d")...) // SIGTERM, trapped: exit 7
		waitStatus(t, "c-d", "STOPPED")
		r := runCmd(nil, nil, "ctr", ctr("task", "rm", "c-d")...)
		if r.err != nil {
			t.Fatalf("%s", r)
		}
		if !strings.Contains(r.stdout+r.stderr, "7") {
			t.Errorf("task rm does not report exit status 7: %s", r)
		}
		must(t, nil, "ctr", ctr("containers", "rm", "c-d")...)
		if _, err := os.Stat(filepath.Join(runcRoot, ns, "c-d")); err == nil {
			t.Errorf("runtime state %s left after delete", filepath.Join(runcRoot, ns, "c-d"))
		}
	})

	check(t, "containerd/run-tty", func(t *testing.T) {
		args := append(append([]string{"run", "--rm", "-t"}, runFlags...), busyboxRef, "c-tty",
			"sh", "-c", "tty; until [ \"$(stty size 2>/dev/null)\" = \"24 80\" ]; do sleep 0.1; done; stty size; echo tty-ok")
		p, err := startPty(nil, "ctr", ctr(args...)...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.kill()
		if err := p.expect("tty-ok"); err != nil {
			t.Fatal(err)
		}
		code, err := p.wait()
		out := p.output()
		if err != nil || code != 0 {
			t.Fatalf("exit %d (%v)\n%s", code, err, out)
		}
		if !strings.Contains(out, "/dev/pts/") || !strings.Contains(out, "24 80") {
			t.Errorf("want a pts of the caller's size 24x80: %q", out)
		}
	})

	teardown()
	leakCheck(t, "containerd/no-leaks", before, dir, ns, scope{})
}

// need fails a check whose prerequisite failed, naming it.
func need(t *testing.T, ok bool, what string) {
	t.Helper()
	if !ok {
		t.Fatalf("prerequisite %s failed", what)
	}
}

func hasPIDLine(out, pid string) bool {
	if _, err := strconv.Atoi(pid); err != nil {
		return false
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == pid {
			return true
		}
	}
	return false
}

// skipUnlessCgroupsLoadable skips when a cgroup v1 hierarchy listed in
// /proc/self/cgroup is mounted nowhere in our mount namespace: containerd's
// cgroup library then fails ("cannot find cgroup mount destination") for
// every runtime, runc included, and the shim serves no metrics.
func skipUnlessCgroupsLoadable(t *testing.T) {
	t.Helper()
	b, _ := os.ReadFile("/proc/self/cgroup")
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	mounted := map[string]bool{}
	for _, l := range strings.Split(string(mi), "\n") {
		if i := strings.Index(l, " - cgroup cgroup "); i >= 0 {
			for _, o := range strings.Split(strings.Fields(l[i+len(" - cgroup cgroup "):])[0], ",") {
				mounted[o] = true
			}
		}
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 || f[0] == "0" || f[1] == "" {
			continue
		}
		for _, ctl := range strings.Split(f[1], ",") {
			if !mounted[ctl] {
				t.Skipf("host: cgroup v1 hierarchy %q (%s) is not mounted here; containerd cannot load any container's cgroups", ctl, l)
			}
		}
	}
}
