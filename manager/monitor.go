package manager

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/manager/ociruntime"
)

// MonitorMain is the hidden monitor mode: `cubo __cubo_monitor DIR` with the container's
// lock on fd 3 and the sync pipe to `cubo run` on fd 4, in its own session. It runs the
// container through the runtime, keeps its logs, records its exit and cleans up; it
// never returns.
//
// Order matters for crash safety: the record says "running" only after `start`, and
// "stopped" (with the exit code) is written after the logs are drained and before the
// runtime state is deleted, so a monitor killed at any point leaves a record that
// reconciliation completes (see reconcile).
func MonitorMain() {
	if len(os.Args) < 3 {
		os.Exit(2)
	}
	// The monitor only waits and copies; one P is enough and costs less to start and
	// to keep per container.
	goruntime.GOMAXPROCS(1)
	lock := os.NewFile(monitorLockFd, "lock")
	sync := os.NewFile(monitorSyncFd, "sync")
	unix.CloseOnExec(monitorLockFd)
	unix.CloseOnExec(monitorSyncFd)
	code := monitor(os.Args[2], lock, sync)
	os.Exit(code)
}

type mon struct {
	c      *Container
	m      *Manager // the container's manager, for its network and --rm
	rt     *ociruntime.Runtime
	log    zerolog.Logger
	sync   *os.File
	attach bool
	logMu  sync.Mutex
	logF   *os.File
	// logSize is container.log's size, for the rotation at c.LogMaxSize.
	logSize int64

	// gate holds the output back until start succeeded: before that only the runtime
	// writes to the container's stdio (its error text, already read from its log), and
	// that must not reach the log or the user's terminal a second time.
	gate     chan struct{}
	gateOnce sync.Once
	discard  bool
}

// openGate releases the held output, or discards it (and all later output) when the
// container failed to start.
func (mo *mon) openGate(discard bool) {
	mo.gateOnce.Do(func() {
		mo.discard = discard
		close(mo.gate)
	})
}

func (mo *mon) send(mm monitorMsg) {
	if mo.sync == nil {
		return
	}
	b, _ := json.Marshal(mm)
	if _, err := mo.sync.Write(append(b, '\n')); err != nil {
		// cubo run went away (detached, or killed): nobody listens any more.
		mo.sync.Close()
		mo.sync = nil
	}
}

func monitor(dir string, lock, syncPipe *os.File) int {
	defer lock.Close()
	// As child subreaper the monitor inherits the container's init when the runtime's
	// create exits, so it alone can collect the exit status (conmon does the same).
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 1
	}
	// Notify, not Ignore: an ignored disposition would be inherited by the container
	// across exec. SIGPIPE on a closed attached terminal must not kill the monitor.
	signal.Notify(make(chan os.Signal, 1), unix.SIGPIPE, unix.SIGHUP)
	c, err := loadMeta(dir)
	if err != nil {
		return 1
	}
	mo := &mon{c: c, rt: c.runtime(), sync: syncPipe, attach: c.Interactive, gate: make(chan struct{})}
	mo.m = &Manager{root: filepath.Dir(filepath.Dir(dir)), dir: filepath.Dir(dir), log: zerolog.Nop()}
	mo.log = zerolog.Nop()
	if lvl, err := zerolog.ParseLevel(os.Getenv("_CUBO_MONITOR_LOG")); err == nil && lvl <= zerolog.InfoLevel {
		if f, err := os.OpenFile(filepath.Join(dir, "monitor.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600); err == nil {
			mo.log = zerolog.New(f).Level(lvl).With().Timestamp().Logger()
		}
	}
	os.Unsetenv("_CUBO_MONITOR_LOG")
	mo.m.log = mo.log
	mo.logF, err = os.OpenFile(c.LogPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		mo.fail(err)
		return 1
	}
	if fi, err := mo.logF.Stat(); err == nil {
		mo.logSize = fi.Size()
	}
	if err := os.MkdirAll(c.RuntimeRoot, 0o700); err != nil {
		mo.fail(err)
		return 1
	}
	code := mo.run()
	mo.finish()
	if code >= 0 {
		mo.send(monitorMsg{Exit: &code})
	}
	return 0
}

// fail records a start failure, tells cubo run, and cleans up the runtime's leftovers.
func (mo *mon) fail(err error) {
	mo.openGate(true)
	mo.log.Error().Err(err).Msg("start failed")
	c := mo.c
	c.Status = StatusStopped
	c.Finished = time.Now().UTC()
	// As docker: 127 when the command does not exist, 126 when it cannot be run.
	c.ExitCode = 126
	if msg := strings.ToLower(err.Error()); strings.Contains(msg, "not found") || strings.Contains(msg, "no such file") {
		c.ExitCode = 127
	}
	c.Error = err.Error()
	_ = c.save()
	_ = mo.rt.Delete(context.Background(), c.ID, true)
	removeCgroups(c.dir)
	// Released before cubo run hears of the failure, so that when it returns the
	// published ports are free again.
	if err := mo.m.teardownNetwork(context.Background(), c.ID); err != nil {
		mo.log.Error().Err(err).Msg("release network")
	}
	mo.send(monitorMsg{Error: err.Error()})
}

// finish deletes the runtime state, releases the network (address, published ports,
// namespace) now that the exit is reaped and, for --rm, removes the whole container.
func (mo *mon) finish() {
	_ = mo.rt.Delete(context.Background(), mo.c.ID, true)
	if err := mo.m.teardownNetwork(context.Background(), mo.c.ID); err != nil {
		mo.log.Error().Err(err).Msg("release network")
	}
	if mo.c.AutoRemove {
		if err := mo.m.destroyFiles(mo.c); err != nil {
			mo.log.Error().Err(err).Msg("remove container")
		}
	}
}

// run creates and starts the container and waits for it; it returns the exit status,
// or -1 when the container never ran (fail has reported why).
func (mo *mon) run() int {
	c := mo.c
	ctx := context.Background()
	pidFile := filepath.Join(c.dir, "init.pid")
	opts := &ociruntime.CreateOpts{PidFile: pidFile}
	var copiers sync.WaitGroup
	var master *os.File
	var closeAfterCreate []*os.File
	if c.Tty {
		sockDir, err := os.MkdirTemp("", "cubo-tty-")
		if err != nil {
			mo.fail(err)
			return -1
		}
		defer os.RemoveAll(sockDir)
		sock := filepath.Join(sockDir, "s")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
		if err != nil {
			mo.fail(err)
			return -1
		}
		defer ln.Close()
		opts.ConsoleSocket = sock
		got := make(chan *os.File, 1)
		go func() { got <- recvFd(ln) }()
		if err := mo.rt.Create(ctx, c.ID, c.dir, opts); err != nil {
			mo.fail(err)
			return -1
		}
		ln.Close()
		master = <-got
		if master == nil {
			mo.fail(errors.New("runtime sent no console"))
			return -1
		}
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			mo.fail(err)
			return -1
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			mo.fail(err)
			return -1
		}
		opts.Stdout, opts.Stderr = outW, errW
		closeAfterCreate = append(closeAfterCreate, outW, errW)
		if mo.attach {
			opts.Stdin = os.Stdin
		}
		var teeOut, teeErr io.Writer
		if mo.attach {
			teeOut, teeErr = os.Stdout, os.Stderr
		}
		copiers.Add(2)
		go func() { defer copiers.Done(); mo.copyLog(outR, "stdout", teeOut) }()
		go func() { defer copiers.Done(); mo.copyLog(errR, "stderr", teeErr) }()
		err = mo.rt.Create(ctx, c.ID, c.dir, opts)
		for _, f := range closeAfterCreate {
			f.Close()
		}
		if err != nil {
			mo.openGate(true)
			copiers.Wait()
			mo.fail(err)
			return -1
		}
	}
	pid, err := readPid(pidFile)
	if err != nil {
		mo.fail(err)
		return -1
	}
	if master != nil {
		defer master.Close()
		var tee io.Writer
		if mo.attach {
			tee = os.Stdout
			mo.resize(master)
			winch := make(chan os.Signal, 4)
			signal.Notify(winch, unix.SIGWINCH)
			go func() {
				for range winch {
					mo.resize(master)
				}
			}()
			go func() { _, _ = io.Copy(master, os.Stdin) }()
		}
		copiers.Add(1)
		go func() { defer copiers.Done(); mo.copyLog(master, "stdout", tee) }()
	}
	// "running" is recorded before start so that the record never lags behind output
	// the process already wrote; a monitor dying between the two leaves a record that
	// reconciliation corrects from the runtime's state.
	c.Status = StatusRunning
	c.Started = time.Now().UTC()
	c.Pid = pid
	c.MonitorPid = os.Getpid()
	if err := c.save(); err != nil {
		mo.log.Error().Err(err).Msg("record start")
	}
	if err := mo.rt.Start(ctx, c.ID); err != nil {
		_ = mo.rt.Kill(ctx, c.ID, unix.SIGKILL, true)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
		c.Pid = 0
		mo.fail(err)
		return -1
	}
	mo.openGate(false)
	mo.send(monitorMsg{Started: true, Pid: pid})

	code := waitPid(pid)
	mo.log.Debug().Int("status", code).Msg("container exited")
	// The private pid namespace dies with its init, so every writer of the pipes is
	// gone and the copiers reach EOF; the pty master reads EIO once no slave is open.
	copiers.Wait()
	mo.logMu.Lock()
	_ = mo.logF.Sync()
	mo.logMu.Unlock()
	// Read before the runtime's delete removes the cgroup, which holds the only count.
	c.OOMKilled = oomKilled(c.dir)
	c.Status = StatusStopped
	c.Finished = time.Now().UTC()
	c.ExitCode = code
	c.Pid = 0
	if err := c.save(); err != nil {
		mo.log.Error().Err(err).Msg("record exit")
	}
	return code
}

// waitPid reaps pid and returns its status as a shell would (128+signal when killed).
func waitPid(pid int) int {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1
		}
		break
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func readPid(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func (mo *mon) resize(master *os.File) {
	ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
}

// logLine is one line of container.log.
type logLine struct {
	Time    time.Time `json:"time"`
	Stream  string    `json:"stream"`
	Text    string    `json:"text"`
	Partial bool      `json:"partial,omitempty"`
}

// maxLine bounds a log record; longer lines are split into partial records.
const maxLine = 16 << 10

// copyLog copies r line by line into the log (and raw to tee when attached).
func (mo *mon) copyLog(r io.ReadCloser, stream string, tee io.Writer) {
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			<-mo.gate
		}
		if len(line) > 0 && !mo.discard {
			if tee != nil {
				if _, werr := tee.Write(line); werr != nil {
					tee = nil
				}
			}
			text := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
			b, _ := json.Marshal(logLine{Time: time.Now().UTC(), Stream: stream, Text: text, Partial: errors.Is(err, bufio.ErrBufferFull)})
			b = append(b, '\n')
			mo.logMu.Lock()
			if max := mo.c.LogMaxSize; max > 0 && mo.logSize > 0 && mo.logSize+int64(len(b)) > max {
				mo.rotateLocked()
			}
			// One write per record on an O_APPEND file: a follower never sees half a line.
			n, _ := mo.logF.Write(b)
			mo.logSize += int64(n)
			mo.logMu.Unlock()
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// rotateLocked moves container.log to container.log.1 (dropping the previous one) and
// starts a new container.log, so a flooding container holds at most about twice
// LogMaxSize of disk. A failed rotation keeps writing to the current file.
// Preconditions: mo.logMu is held.
func (mo *mon) rotateLocked() {
	_ = mo.logF.Sync()
	path := mo.c.LogPath()
	if err := os.Rename(path, filepath.Join(mo.c.dir, rotatedLogName)); err != nil {
		mo.log.Error().Err(err).Msg("rotate log")
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		// The renamed file stays open: output keeps going somewhere readable.
		mo.log.Error().Err(err).Msg("rotate log")
		return
	}
	mo.logF.Close()
	mo.logF = f
	mo.logSize = 0
}

// oomKilled tells whether the OOM killer killed a process in the container's memory
// cgroup: the oom_kill count of memory.oom_control (cgroup v1) or memory.events (v2)
// of the cgroup config.json names. It must be read before the runtime deletes the
// cgroup.
func oomKilled(bundle string) bool {
	cg := cgroupPath(bundle)
	if cg == "" {
		return false
	}
	for _, f := range []string{
		filepath.Join("/sys/fs/cgroup/memory", cg, "memory.oom_control"),
		filepath.Join("/sys/fs/cgroup", cg, "memory.events"),
	} {
		if n, ok := readCounter(f, "oom_kill"); ok {
			return n > 0
		}
	}
	return false
}

// cgroupPath returns the container's cgroup path from the bundle's config.json, ""
// when it has none or names a systemd slice:prefix:name this does not resolve.
func cgroupPath(bundle string) string {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return ""
	}
	var cfg struct {
		Linux struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if json.Unmarshal(b, &cfg) != nil || cfg.Linux.CgroupsPath == "" || strings.Contains(cfg.Linux.CgroupsPath, ":") {
		return ""
	}
	return filepath.Clean("/" + cfg.Linux.CgroupsPath)
}

// removeCgroups kills whatever is left in the container's cgroups and removes them. A
// runtime killed during create leaves cgroups its state never recorded, so its own
// delete cannot find them; the path is the container's alone.
func removeCgroups(bundle string) {
	cg := cgroupPath(bundle)
	if cg == "" || cg == "/" {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", cg))
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", cg, "cgroup.procs")); err == nil {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", cg))
	}
	for _, d := range dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
	}
	for _, d := range dirs {
		// A killed process leaves its cgroup once reaped; its reaper is init or us.
		for range 100 {
			if err := unix.Rmdir(d); err == nil || errors.Is(err, unix.ENOENT) || !errors.Is(err, unix.EBUSY) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// readCounter returns the value of the "key N" line of a cgroup file.
func readCounter(path, key string) (int64, bool) {
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

// recvFd accepts one connection on ln and returns the fd it carries (the pty master).
func recvFd(ln *net.UnixListener) *os.File {
	conn, err := ln.AcceptUnix()
	if err != nil {
		return nil
	}
	defer conn.Close()
	buf := make([]byte, 256)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "pty-master")
}
