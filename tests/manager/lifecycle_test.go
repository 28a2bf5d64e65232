package manager_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

// ps lists running containers (all with --all) in the seed's table; stop honours SIGTERM,
// then SIGKILL after --time, or SIGKILL at once with --force; rm refuses a running
// container without --force and leaves nothing.
func TestPsStopRm(t *testing.T) {
	forRuntimes(t, func(t *testing.T, e *env) {
		e.ok("run", "--name", "polite", "busybox", "sh", "-c", `trap "exit 0" TERM; echo ready; while true; do sleep 0.05; done`)
		e.ok("run", "--name", "stubborn", "busybox", "sh", "-c", `trap "" TERM; echo ready; while true; do sleep 0.05; done`)
		e.ok("run", "--name", "victim", "busybox", "sleep", "1000")
		e.ok("run", "--name", "done", "busybox", "true")
		e.waitExit("done")

		out := e.ok("ps")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "CONTAINER ID   NAME") ||
			!strings.Contains(lines[0], "IMAGE") || !strings.Contains(lines[0], "COMMAND") ||
			!strings.Contains(lines[0], "CREATED") || !strings.Contains(lines[0], "STATUS") || !strings.HasSuffix(lines[0], "PORTS") {
			t.Fatalf("ps:\n%s", out)
		}
		for _, l := range lines[1:] {
			if !strings.Contains(l, "busybox:latest") || !strings.Contains(l, "Up ") {
				t.Fatalf("ps row: %q", l)
			}
		}
		all := e.ok("ps", "--all")
		if !strings.Contains(all, "Exited (0)") || strings.Count(all, "\n") != 5 {
			t.Fatalf("ps --all:\n%s", all)
		}

		e.waitLog("polite", "ready")
		e.waitLog("stubborn", "ready")
		e.fails("is running", "rm", "polite")
		e.ok("stop", "polite")
		if c := e.inspect("polite"); c.Status != "stopped" || c.ExitCode != 0 {
			t.Fatalf("stop with SIGTERM: %+v", c)
		}
		start := time.Now()
		e.ok("stop", "--time", "1", "stubborn")
		if c := e.inspect("stubborn"); c.Status != "stopped" || c.ExitCode != 137 {
			t.Fatalf("stop after the timeout: %+v", c)
		}
		if d := time.Since(start); d < time.Second {
			t.Fatalf("SIGKILL came before the 1 s timeout (%v)", d)
		}
		e.ok("stop", "--force", "victim")
		if c := e.inspect("victim"); c.ExitCode != 137 {
			t.Fatalf("stop --force: %+v", c)
		}
		e.ok("stop", "victim") // already stopped: nothing to do

		e.ok("run", "--name", "running", "busybox", "sleep", "1000")
		ids := strings.Fields(e.ok("ps", "-aq"))
		out = e.ok("rm", "--force", "running", "polite", "stubborn", "victim", "done")
		if out != "running\npolite\nstubborn\nvictim\ndone\n" {
			t.Fatalf("rm printed %q", out)
		}
		if cs := e.ps(); len(cs) != 0 {
			t.Fatalf("after rm: %+v", cs)
		}
		e.assertClean(ids)
		e.fails("no such container", "rm", "running")
	})
}

// --rm leaves nothing behind, attached (gone when run returns) or detached.
func TestAutoRemove(t *testing.T) {
	forRuntimes(t, func(t *testing.T, e *env) {
		out, _, code := e.run("run", "-i", "--rm", "busybox", "sh", "-c", "echo bye; exit 3")
		if out != "bye\n" || code != 3 {
			t.Fatalf("run -i --rm: %q exit %d", out, code)
		}
		e.assertClean(nil)
		id := strings.TrimSpace(e.ok("run", "--rm", "busybox", "true"))
		hostenv.Eventually(t, "the detached --rm container to disappear", func() bool {
			// Removal renames the dir to a .rm- tombstone first, then deletes it.
			for _, d := range []string{id, ".rm-" + id} {
				if _, err := os.Stat(filepath.Join(e.root, "containers", d)); !os.IsNotExist(err) {
					return false
				}
			}
			return true
		})
		e.assertClean([]string{id})
	})
}

// Bad input gives one clear line and creates nothing.
func TestBadInput(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	e.ok("run", "--name", "taken", "busybox", "true")
	e.waitExit("taken")
	before := e.ps()
	missing := filepath.Join(t.TempDir(), "missing")
	for _, c := range []struct {
		want string
		args []string
	}{
		{"not found", []string{"run", "nosuch:latest"}},
		{`"taken" is already in use`, []string{"run", "--name", "taken", "busybox", "true"}},
		{"want HOST:CONTAINER", []string{"run", "-v", "/tmp", "busybox", "true"}},
		{"mode must be ro or rw", []string{"run", "-v", "/tmp:/x:rx", "busybox", "true"}},
		{"must be absolute", []string{"run", "-v", "tmp:/x", "busybox", "true"}},
		{"does not exist", []string{"run", "-v", missing + ":/x", "busybox", "true"}},
		{"is not a number in 1-65535", []string{"run", "-p", "80:99999", "busybox", "true"}},
		{"want HOST:CONT[/tcp|udp]", []string{"run", "-p", "80", "busybox", "true"}},
		{"protocol must be tcp or udp", []string{"run", "-p", "80:80/sctp", "busybox", "true"}},
		{"want KEY=VALUE", []string{"run", "-e", "NOVALUE", "busybox", "true"}},
		{"want KEY=VALUE", []string{"run", "-e", "=x", "busybox", "true"}},
		{"must match", []string{"run", "--name", "bad/name", "busybox", "true"}},
		{"size", []string{"run", "--memory", "lots", "busybox", "true"}},
		{"workdir", []string{"run", "-w", "rel", "busybox", "true"}},
		{"no such user", []string{"run", "-u", "nosuchuser", "busybox", "true"}},
		{"no such container", []string{"stop", "nosuch"}},
		{"no such container", []string{"logs", "nosuch"}},
	} {
		e.fails(c.want, c.args...)
	}
	if after := e.ps(); len(after) != len(before) {
		t.Fatalf("bad input created containers: %+v", after)
	}
	names, _ := os.ReadDir(filepath.Join(e.root, "containers", ".names"))
	if len(names) != 1 {
		t.Fatalf("names left: %v", names)
	}
	// A command that cannot start is a clear error too; the container is recorded as
	// exited with docker's 127.
	e.fails("no such file or directory", "run", "--name", "nocmd", "busybox", "/nonexistent")
	if c := e.inspect("nocmd"); c.Status != "stopped" || c.ExitCode != 127 || c.Error == "" {
		t.Fatalf("failed start: %+v", c)
	}
}

// SIGKILL of cubo while it runs attached: the monitor carries on, the output is still
// logged, and the exit is recorded.
func TestKillCuboDuringRun(t *testing.T) {
	forRuntimes(t, func(t *testing.T, e *env) {
		vol := t.TempDir()
		cmd := e.cmd("run", "-i", "--name", "orphan", "-v", vol+":/x", "busybox", "sh", "-c",
			"echo started; while [ ! -e /x/go ]; do sleep 0.02; done; echo after; exit 4")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if l, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || l != "started\n" {
			t.Fatalf("first line %q %v", l, err)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if c := e.inspect("orphan"); c.Status != "running" || c.Error != "" {
			t.Fatalf("after SIGKILL of cubo: %+v", c)
		}
		if err := os.WriteFile(filepath.Join(vol, "go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		c := e.waitExit("orphan")
		if c.ExitCode != 4 {
			t.Fatalf("exit not recorded: %+v", c)
		}
		if out := e.ok("logs", "orphan"); out != "started\nafter\n" {
			t.Fatalf("logs: %q", out)
		}
	})
}

// SIGKILL of the monitor while the container runs: the next command notices, the
// container stays manageable, and stop records it as exited with the reason.
func TestKillMonitor(t *testing.T) {
	forRuntimes(t, func(t *testing.T, e *env) {
		e.ok("run", "--name", "lonely", "busybox", "sh", "-c", `trap "exit 0" TERM; echo ready; while true; do sleep 0.05; done`)
		e.waitLog("lonely", "ready")
		c := e.inspect("lonely")
		if c.Monitor == 0 || c.Pid == 0 {
			t.Fatalf("record lacks pids: %+v", c)
		}
		if err := syscall.Kill(c.Monitor, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// The monitor holds the container's lock until it is gone; rm -f waits for
		// nothing then, so wait for the lock the way cubo does.
		waitUnlocked(t, filepath.Join(e.root, "containers", c.ID, "lock"))
		out := e.ok("ps")
		if !strings.Contains(out, "(no monitor)") {
			t.Fatalf("ps after the monitor died:\n%s", out)
		}
		if c := e.inspect("lonely"); c.Status != "running" || !strings.Contains(c.Error, "monitor died") {
			t.Fatalf("record after the monitor died: %+v", c)
		}
		e.ok("stop", "lonely")
		c = e.inspect("lonely")
		if c.Status != "stopped" || c.ExitCode != -1 || c.Finished.IsZero() || !strings.Contains(c.Error, "monitor died") {
			t.Fatalf("after stop: %+v", c)
		}
	})
}

func waitUnlocked(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
}

// 50 containers started at once get distinct IDs and names and are all listed.
func TestParallel50(t *testing.T) {
	forRuntimes(t, func(t *testing.T, e *env) {
		const n = 50
		ids := make([]string, n)
		errs := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, stderr, code := e.run("run", "busybox", "sleep", "1000")
				if code != 0 {
					errs[i] = stderr
				}
				ids[i] = strings.TrimSpace(out)
			}()
		}
		wg.Wait()
		for i, s := range errs {
			if s != "" {
				t.Fatalf("run %d: %s", i, s)
			}
		}
		cs := e.ps()
		if len(cs) != n {
			t.Fatalf("ps lists %d containers, want %d", len(cs), n)
		}
		seenID, seenName := map[string]bool{}, map[string]bool{}
		for _, c := range cs {
			if seenID[c.ID] || seenName[c.Name] || c.Status != "running" {
				t.Fatalf("duplicate or not running: %+v", c)
			}
			seenID[c.ID], seenName[c.Name] = true, true
		}
		for _, id := range ids {
			if !seenID[id] {
				t.Fatalf("run printed %s, not listed", id)
			}
		}
		if out := e.ok("ps", "-q"); strings.Count(out, "\n") != n {
			t.Fatalf("ps -q: %d lines", strings.Count(out, "\n"))
		}
		e.ok(append([]string{"rm", "-f"}, ids...)...)
		e.assertClean(ids)
	})
}

// --interactive on a terminal: a pty in the container with the caller's window size.
func TestInteractiveTTY(t *testing.T) {
	forRuntimes(t, func(t *testing.T, e *env) {
		pty, slave, err := console.NewPty()
		if err != nil {
			t.Skipf("no pty: %v", err)
		}
		defer pty.Close()
		if err := pty.Resize(console.WinSize{Height: 33, Width: 101}); err != nil {
			t.Fatal(err)
		}
		sf, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		cmd := e.cmd("run", "-i", "--rm", "busybox", "sh", "-c", "tty; stty size; read line; echo got:$line; exit 6")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = sf, sf, sf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sf.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		r := bufio.NewReader(pty)
		var seen strings.Builder
		readUntil := func(want string) {
			for !strings.Contains(seen.String(), want) {
				l, err := r.ReadString('\n')
				seen.WriteString(l)
				if err != nil {
					t.Fatalf("waiting for %q: %v\n%s", want, err, seen.String())
				}
			}
		}
		readUntil("/dev/pts/")
		readUntil("33 101")
		fmt.Fprint(pty, "typed\r")
		readUntil("got:typed")
		if err := <-done; err == nil || cmd.ProcessState.ExitCode() != 6 {
			t.Fatalf("exit: %v\n%s", err, seen.String())
		}
	})
}

// exec runs a process in a running container with its own env and exit status.
func TestExec(t *testing.T) {
	forRuntimes(t, func(t *testing.T, e *env) {
		if e.runtime == "cubo-runc" {
			if _, _, code := e.runRuntime("exec", "--help"); code != 0 {
				t.Skip("cubo-runc has no exec yet")
			}
		}
		e.ok("run", "--name", "host", "busybox", "sleep", "1000")
		out := e.ok("exec", "-e", "V=1", "-w", "/etc", "host", "sh", "-c", "echo $V $(pwd)")
		if out != "1 /etc\n" {
			t.Fatalf("exec: %q", out)
		}
		if _, _, code := e.run("exec", "host", "sh", "-c", "exit 9"); code != 9 {
			t.Fatalf("exec exit status %d, want 9", code)
		}
		e.ok("stop", "--force", "host")
		e.fails("not running", "exec", "host", "true")
	})
}

func (e *env) runRuntime(args ...string) (string, string, int) {
	bin := e.runtime
	if !strings.Contains(bin, "/") {
		bin = filepath.Join(hostenv.BinDir, bin)
	}
	cmd := e.cmd()
	cmd.Path, cmd.Args = bin, append([]string{bin}, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return out.String(), errb.String(), code
}

// A detached container survives the terminal it was started from hanging up: the
// monitor leads its own session, so the session's SIGHUP never reaches it.
func TestSurvivesTerminalHangup(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	pty, slave, err := console.NewPty()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	sf, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	cmd := e.cmd("run", "--name", "bg", "-v", vol+":/x", "busybox", "sh", "-c",
		"echo ready; while [ ! -e /x/go ]; do sleep 0.02; done; echo survived")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = sf, sf, sf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	sf.Close()
	pty.Close() // the terminal goes away: hangup for its session
	e.waitLog("bg", "ready")
	if err := os.WriteFile(filepath.Join(vol, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if c := e.waitExit("bg"); c.ExitCode != 0 {
		t.Fatalf("%+v", c)
	}
	if out := e.ok("logs", "bg"); out != "ready\nsurvived\n" {
		t.Fatalf("logs %q", out)
	}
}

// An --rm container whose monitor died is still removed once it stops, and its name is
// free again.
func TestAutoRemoveWithoutMonitor(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	id := strings.TrimSpace(e.ok("run", "--rm", "--name", "rr", "busybox", "sleep", "1000"))
	c := e.inspect("rr")
	if err := syscall.Kill(c.Monitor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUnlocked(t, filepath.Join(e.root, "containers", id, "lock"))
	e.ok("stop", "--force", "rr")
	if cs := e.ps(); len(cs) != 0 {
		t.Fatalf("--rm container left: %+v", cs)
	}
	e.assertClean([]string{id})
	e.ok("run", "-i", "--rm", "--name", "rr", "busybox", "true")
}
