package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sample is one measured command: wall time from fork to reaping, CPU
// (user+sys in microseconds from wait4's rusage) summed over the whole
// process tree, and the largest ru_maxrss seen in the tree.
type sample struct {
	wall   time.Duration
	cpu    time.Duration
	maxRSS int64 // KiB
}

func (s *sample) add(ru *unix.Rusage) {
	s.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	if ru.Maxrss > s.maxRSS {
		s.maxRSS = ru.Maxrss
	}
}

// The harness is a child subreaper, so every process a runtime leaves
// behind (runc's and crun's container init after create, runc's
// intermediate nsexec children) is reparented to it and its rusage is
// counted too instead of vanishing into pid 1.
func becomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

var devNull *os.File

// spawn starts argv with stdin and stdout on /dev/null and stderr into a
// temp file, returning the pid and the stderr file.
func spawn(argv []string, env []string) (int, *os.File, error) {
	if devNull == nil {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return 0, nil, err
		}
		devNull = f
	}
	errf, err := os.CreateTemp("", "cubo-bench-stderr-")
	if err != nil {
		return 0, nil, err
	}
	os.Remove(errf.Name())
	if env == nil {
		env = os.Environ()
	}
	files := []uintptr{devNull.Fd(), devNull.Fd(), errf.Fd()}
	if extraFile != nil {
		files = append(files, extraFile.Fd())
	}
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Env: env, Files: files})
	if err != nil {
		errf.Close()
		return 0, nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	return pid, errf, nil
}

func stderrText(f *os.File) string {
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	return strings.TrimSpace(string(bytes.ToValidUTF8(b[:n], nil)))
}

// measure runs argv to completion, alone: it reaps with wait4(-1) so the
// rusage of every descendant that exits meanwhile and was reparented to the
// harness is counted into the sample. Only for sequential use.
func measure(argv []string, env []string) (sample, error) {
	return measureReap(argv, env, true)
}

// measureOwn is measure without reaping other children meanwhile: `start`
// releases a container init that is our child (reparented after create),
// and reaping it while start still looks at it would be a different test.
func measureOwn(argv []string, env []string) (sample, error) {
	return measureReap(argv, env, false)
}

func measureReap(argv []string, env []string, all bool) (sample, error) {
	return measureVia(argv, env, all, false)
}

// measureTree is measure that also waits, after argv exits, for every
// process reparented to it (a manager's monitor, podman's conmon) to
// exit: wall and CPU then cover the whole tree, including a removal done
// in the background.
func measureTree(argv []string, env []string) (sample, error) {
	return measureVia(argv, env, true, true)
}

// launcher is the compiled launch shim (see launch/launch.c); empty when
// no C compiler was found, and then peak RSS figures include the harness's
// own RSS.
var launcher string

func measureVia(argv []string, env []string, all, tree bool) (sample, error) {
	var s sample
	if all {
		reapOrphans(&s)
	}
	var report *os.File
	run := argv
	if launcher != "" {
		r, w, err := os.Pipe()
		if err != nil {
			return s, err
		}
		report = r
		defer r.Close()
		extraFile = w
		run = append([]string{launcher}, argv...)
		if tree {
			if env == nil {
				env = os.Environ()
			}
			env = append(env[:len(env):len(env)], "CUBO_BENCH_WAITALL=1")
		}
	}
	t0 := time.Now()
	pid, errf, err := spawn(run, env)
	if extraFile != nil {
		extraFile.Close()
		extraFile = nil
	}
	if err != nil {
		return s, err
	}
	defer errf.Close()
	var ws unix.WaitStatus
	want := -1
	if !all {
		want = pid
	}
	var own unix.Rusage
	for {
		var ru unix.Rusage
		got, err := unix.Wait4(want, &ws, 0, &ru)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return s, fmt.Errorf("wait4: %w", err)
		}
		if got == pid {
			s.wall = time.Since(t0)
			own = ru
			break
		}
		s.add(&ru)
		noteReaped(got)
	}
	if all {
		reapOrphans(&s)
	}
	if report != nil {
		// The shim's own figures replace its rusage (which holds the
		// harness's RSS at fork).
		var wall, cpu, rss int64
		var st uint32
		if _, err := fmt.Fscan(report, &wall, &cpu, &rss, &st); err != nil {
			return s, fmt.Errorf("%s: no report from the launch shim: %s", strings.Join(argv, " "), stderrText(errf))
		}
		s.wall = time.Duration(wall) * time.Microsecond
		s.cpu += time.Duration(cpu) * time.Microsecond
		if rss > s.maxRSS {
			s.maxRSS = rss
		}
		ws = unix.WaitStatus(st)
	} else {
		s.add(&own)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return s, fmt.Errorf("%s: %s: %s", strings.Join(argv, " "), describe(ws), stderrText(errf))
	}
	return s, nil
}

// extraFile, when set, is passed to the next spawn as fd 3.
var extraFile *os.File

// waitPid waits for one specific process (a container init reparented to
// the harness after create) and returns its own rusage.
func waitPid(pid int) (sample, unix.WaitStatus, error) {
	var s sample
	var ws unix.WaitStatus
	var ru unix.Rusage
	t0 := time.Now()
	for {
		_, err := unix.Wait4(pid, &ws, 0, &ru)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return s, ws, err
		}
		break
	}
	s.wall = time.Since(t0)
	s.add(&ru)
	return s, ws, nil
}

// run runs argv once for its side effect (setup and cleanup commands) and
// returns the combined error text.
func run(argv ...string) error {
	_, err := measure(argv, nil)
	return err
}

// reapOrphans collects exited orphans without blocking.
func reapOrphans(s *sample) {
	for {
		var ru unix.Rusage
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, &ru)
		if err != nil || got <= 0 {
			return
		}
		if s != nil {
			s.add(&ru)
		}
		noteReaped(got)
	}
}

// reapedHook lets long-lived children (the cgroup helper) learn that the
// sequential wait loop reaped them.
var reapedHook func(pid int)

func noteReaped(pid int) {
	if reapedHook != nil {
		reapedHook(pid)
	}
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

// vmHWM reads a live process's peak RSS in KiB.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var n int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &n)
			return n
		}
	}
	return 0
}
