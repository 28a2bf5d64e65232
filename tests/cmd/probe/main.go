// Command probe runs as the process of a test container and reports what it
// sees as simple text lines, so that the integration tests in package tests
// can assert outcomes from inside the container.
//
// Usage: probe CMD [ARGS...] [+ CMD [ARGS...]]...
//
// Commands are separated by a lone "+". Every line starts with a key naming
// what it reports (for example "hostname=box", "mount /proc proc rw,...",
// "fd 3 /dev/null"). Commands that test for an expected failure (cat, ls,
// write, open) print the errno name, such as EROFS, and do not fail. The exit
// status is 0 unless a command cannot run at all (status 100) or "exit N" is
// reached.
//
// It is built with CGO_ENABLED=0 so that it needs nothing else in the rootfs.
// containermaxprocs=0 stops the Go runtime from keeping the cgroup CPU files
// open for the life of the process, which would show up in "fds".
//
// Note that the Go runtime raises a soft RLIMIT_NOFILE below hard-1 to
// hard-1 at startup, so "rlimits" cannot see a lower soft NOFILE limit.

//go:debug containermaxprocs=0
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

var out = bufio.NewWriter(os.Stdout)

func main() {
	// fds must be listed before the Go runtime's poller may open anything.
	if len(os.Args) > 1 && os.Args[1] == "fds" {
		listFDs()
		os.Args = append(os.Args[:1], os.Args[2:]...)
		if len(os.Args) > 1 && os.Args[1] == "+" {
			os.Args = append(os.Args[:1], os.Args[2:]...)
		}
	}
	args := os.Args[1:]
	for len(args) > 0 {
		n := 0
		for n < len(args) && args[n] != "+" {
			n++
		}
		if n > 0 {
			run(args[0], args[1:n])
		}
		if n == len(args) {
			break
		}
		args = args[n+1:]
	}
	out.Flush()
}

func die(format string, a ...any) {
	out.Flush()
	fmt.Fprintf(os.Stderr, "probe: "+format+"\n", a...)
	os.Exit(100)
}

func need(cmd string, args []string, n int) {
	if len(args) < n {
		die("%s: need %d argument(s)", cmd, n)
	}
}

// errName maps an error to its errno name (EROFS), or its text.
func errName(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			return name
		}
	}
	return err.Error()
}

func run(cmd string, args []string) {
	switch cmd {
	case "echo":
		fmt.Fprintln(out, strings.Join(args, " "))
	case "hostname":
		h, err := os.Hostname()
		if err != nil {
			die("hostname: %v", err)
		}
		fmt.Fprintf(out, "hostname=%s\n", h)
	case "domainname":
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			die("uname: %v", err)
		}
		fmt.Fprintf(out, "domainname=%s\n", unix.ByteSliceToString(u.Domainname[:]))
	case "id":
		groups, err := unix.Getgroups()
		if err != nil {
			die("getgroups: %v", err)
		}
		sort.Ints(groups)
		gs := make([]string, len(groups))
		for i, g := range groups {
			gs[i] = strconv.Itoa(g)
		}
		fmt.Fprintf(out, "uid=%d gid=%d euid=%d egid=%d groups=%s\n",
			unix.Getuid(), unix.Getgid(), unix.Geteuid(), unix.Getegid(), strings.Join(gs, ","))
	case "pid":
		fmt.Fprintf(out, "pid=%d ppid=%d\n", os.Getpid(), os.Getppid())
	case "cwd":
		wd, err := os.Getwd()
		if err != nil {
			die("getwd: %v", err)
		}
		fmt.Fprintf(out, "cwd=%s\n", wd)
	case "env":
		for _, e := range os.Environ() {
			fmt.Fprintf(out, "env %s\n", e)
		}
	case "args":
		for i, a := range os.Args {
			fmt.Fprintf(out, "arg %d %s\n", i, a)
		}
	case "cat":
		need(cmd, args, 1)
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Fprintf(out, "cat %s %s\n", args[0], errName(err))
			return
		}
		fmt.Fprintf(out, "cat %s ok %d\n", args[0], len(b))
		out.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			out.WriteByte('\n')
		}
	case "ls":
		need(cmd, args, 1)
		ents, err := os.ReadDir(args[0])
		if err != nil {
			fmt.Fprintf(out, "ls %s %s\n", args[0], errName(err))
			return
		}
		fmt.Fprintf(out, "ls %s ok %d\n", args[0], len(ents))
		for _, e := range ents {
			fmt.Fprintf(out, "entry %s\n", e.Name())
		}
	case "write":
		need(cmd, args, 1)
		data := "probe\n"
		if len(args) > 1 {
			data = args[1]
		}
		f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err == nil {
			_, err = f.WriteString(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(out, "write %s %s\n", args[0], errName(err))
			return
		}
		fmt.Fprintf(out, "write %s ok\n", args[0])
	case "mkdir":
		need(cmd, args, 1)
		if err := os.Mkdir(args[0], 0o755); err != nil {
			fmt.Fprintf(out, "mkdir %s %s\n", args[0], errName(err))
			return
		}
		fmt.Fprintf(out, "mkdir %s ok\n", args[0])
	case "stat":
		need(cmd, args, 1)
		for _, p := range args {
			statPath(p)
		}
	case "readlink":
		need(cmd, args, 1)
		t, err := os.Readlink(args[0])
		if err != nil {
			fmt.Fprintf(out, "readlink %s %s\n", args[0], errName(err))
			return
		}
		fmt.Fprintf(out, "readlink %s %s\n", args[0], t)
	case "mounts":
		mounts()
	case "caps":
		status("Cap")
	case "nnp":
		status("NoNewPrivs")
	case "umask":
		status("Umask")
	case "oom":
		b, err := os.ReadFile("/proc/self/oom_score_adj")
		if err != nil {
			die("oom_score_adj: %v", err)
		}
		fmt.Fprintf(out, "oom_score_adj=%s\n", strings.TrimSpace(string(b)))
	case "ns":
		nsList()
	case "rlimits":
		rlimits()
	case "sysctl":
		need(cmd, args, 1)
		for _, name := range args {
			p := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
			b, err := os.ReadFile(p)
			if err != nil {
				fmt.Fprintf(out, "sysctl %s %s\n", name, errName(err))
				continue
			}
			fmt.Fprintf(out, "sysctl %s=%s\n", name, strings.Join(strings.Fields(string(b)), " "))
		}
	case "netdevs":
		netdevs()
	case "cgroup":
		b, err := os.ReadFile("/proc/self/cgroup")
		if err != nil {
			die("cgroup: %v", err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fmt.Fprintf(out, "cgroup %s\n", l)
		}
	case "tty":
		tty()
	case "exit":
		need(cmd, args, 1)
		n, err := strconv.Atoi(args[0])
		if err != nil {
			die("exit: %v", err)
		}
		out.Flush()
		os.Exit(n)
	case "sleep":
		// Block until killed. An optional file is written once we are
		// running, so tests can wait for it instead of sleeping.
		if len(args) > 0 {
			ready(args[0])
		}
		out.Flush()
		for {
			unix.Pause() // not select{}: the Go runtime would call that a deadlock
		}
	case "trap":
		// trap SIGNAL CODE [READYFILE]: exit with CODE when SIGNAL arrives.
		need(cmd, args, 2)
		trap(args)
	case "killself":
		// killself SIGNAL: die by SIGNAL (only works outside a new pid
		// namespace: a namespace init cannot be killed from inside).
		need(cmd, args, 1)
		sig := unix.SignalNum("SIG" + strings.ToUpper(strings.TrimPrefix(args[0], "SIG")))
		if sig == 0 {
			die("killself: unknown signal %q", args[0])
		}
		out.Flush()
		signal.Reset(sig)
		unix.Kill(os.Getpid(), sig)
		for {
			unix.Pause()
		}
	case "nap":
		// nap MS: sleep MS milliseconds, then go on.
		need(cmd, args, 1)
		ms, err := strconv.Atoi(args[0])
		if err != nil {
			die("nap: %v", err)
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case "wait-file":
		// wait-file PATH: block until PATH exists (used to hold a
		// container until the test lets it go, without sleeping).
		need(cmd, args, 1)
		for {
			if _, err := os.Stat(args[0]); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	case "open-exe-write":
		// Try to open the given path (default /proc/self/exe) for writing.
		p := "/proc/self/exe"
		if len(args) > 0 {
			p = args[0]
		}
		fd, err := unix.Open(p, unix.O_WRONLY, 0)
		if err != nil {
			fmt.Fprintf(out, "open-exe-write %s %s\n", p, errName(err))
			return
		}
		unix.Close(fd)
		fmt.Fprintf(out, "open-exe-write %s ok\n", p)
	default:
		if !runSpec(cmd, args) {
			die("unknown command %q", cmd)
		}
	}
}

// listFDs prints "fd N TARGET" for every open descriptor, using raw system
// calls so that nothing of ours shows up except the directory fd, which is
// left out.
func listFDs() {
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		die("open /proc/self/fd: %v", err)
	}
	var names []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(dfd, buf)
		if err != nil {
			die("getdents: %v", err)
		}
		if n == 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	var lines []string
	var fds []int
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == dfd {
			continue
		}
		fds = append(fds, fd)
	}
	sort.Ints(fds)
	for _, fd := range fds {
		target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			target = "?" + errName(err)
		}
		lines = append(lines, fmt.Sprintf("fd %d %s\n", fd, target))
	}
	unix.Close(dfd)
	for _, l := range lines {
		out.WriteString(l)
	}
}

func statPath(p string) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		fmt.Fprintf(out, "stat %s %s\n", p, errName(err))
		return
	}
	kind := "other"
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		kind = "file"
	case unix.S_IFDIR:
		kind = "dir"
	case unix.S_IFLNK:
		t, _ := os.Readlink(p)
		fmt.Fprintf(out, "stat %s symlink %s\n", p, t)
		return
	case unix.S_IFCHR:
		kind = "char"
	case unix.S_IFBLK:
		kind = "block"
	case unix.S_IFIFO:
		kind = "fifo"
	case unix.S_IFSOCK:
		kind = "socket"
	}
	line := fmt.Sprintf("stat %s %s %04o %d:%d", p, kind, st.Mode&0o7777, st.Uid, st.Gid)
	if kind == "char" || kind == "block" {
		line += fmt.Sprintf(" %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	fmt.Fprintln(out, line)
}

// mounts prints "mount TARGET FSTYPE MOUNTOPTS SUPEROPTS" in mountinfo order.
func mounts() {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		die("mountinfo: %v", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		sep := -1
		for i, s := range f {
			if s == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(f) < sep+4 || len(f) < 6 {
			continue
		}
		fmt.Fprintf(out, "mount %s %s %s %s\n", unescape(f[4]), f[sep+1], f[5], f[sep+3])
	}
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// status prints the /proc/self/status fields whose name starts with prefix,
// as "Name=value".
func status(prefix string) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		die("status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.HasPrefix(k, prefix) {
			fmt.Fprintf(out, "%s=%s\n", k, strings.TrimSpace(v))
		}
	}
}

func nsList() {
	ents, err := os.ReadDir("/proc/self/ns")
	if err != nil {
		die("ns: %v", err)
	}
	for _, e := range ents {
		t, err := os.Readlink("/proc/self/ns/" + e.Name())
		if err != nil {
			fmt.Fprintf(out, "ns %s %s\n", e.Name(), errName(err))
			continue
		}
		// "net:[4026531840]" -> "4026531840"
		if i := strings.IndexByte(t, '['); i >= 0 {
			t = strings.TrimSuffix(t[i+1:], "]")
		}
		fmt.Fprintf(out, "ns %s %s\n", e.Name(), t)
	}
}

var rlimitNames = []struct {
	name string
	res  int
}{
	{"AS", unix.RLIMIT_AS}, {"CORE", unix.RLIMIT_CORE}, {"CPU", unix.RLIMIT_CPU},
	{"DATA", unix.RLIMIT_DATA}, {"FSIZE", unix.RLIMIT_FSIZE}, {"LOCKS", unix.RLIMIT_LOCKS},
	{"MEMLOCK", unix.RLIMIT_MEMLOCK}, {"MSGQUEUE", unix.RLIMIT_MSGQUEUE}, {"NICE", unix.RLIMIT_NICE},
	{"NOFILE", unix.RLIMIT_NOFILE}, {"NPROC", unix.RLIMIT_NPROC}, {"RSS", unix.RLIMIT_RSS},
	{"RTPRIO", unix.RLIMIT_RTPRIO}, {"RTTIME", unix.RLIMIT_RTTIME}, {"SIGPENDING", unix.RLIMIT_SIGPENDING},
	{"STACK", unix.RLIMIT_STACK},
}

func rlimits() {
	for _, r := range rlimitNames {
		var l unix.Rlimit
		if err := unix.Prlimit(0, r.res, nil, &l); err != nil {
			die("prlimit %s: %v", r.name, err)
		}
		fmt.Fprintf(out, "rlimit %s %s %s\n", r.name, rlim(l.Cur), rlim(l.Max))
	}
}

func rlim(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

func netdevs() {
	b, err := os.ReadFile("/proc/self/net/dev")
	if err != nil {
		die("net/dev: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		name, _, ok := strings.Cut(l, ":")
		if ok {
			fmt.Fprintf(out, "netdev %s\n", strings.TrimSpace(name))
		}
	}
}

func tty() {
	for fd := 0; fd <= 2; fd++ {
		t, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			t = errName(err)
		}
		_, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		fmt.Fprintf(out, "tty %d %s isatty=%t\n", fd, t, err == nil)
	}
	// The controlling terminal, if any.
	fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		fmt.Fprintf(out, "ctty %s\n", errName(err))
	} else {
		unix.Close(fd)
		fmt.Fprintln(out, "ctty ok")
	}
}

func ready(path string) {
	if err := os.WriteFile(path+".tmp", []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		die("ready: %v", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		die("ready: %v", err)
	}
}

func trap(args []string) {
	sig := unix.SignalNum("SIG" + strings.ToUpper(strings.TrimPrefix(args[0], "SIG")))
	if sig == 0 {
		die("trap: unknown signal %q", args[0])
	}
	code, err := strconv.Atoi(args[1])
	if err != nil {
		die("trap: %v", err)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sig)
	if len(args) > 2 {
		ready(args[2])
	}
	fmt.Fprintf(out, "trap %s armed\n", unix.SignalName(sig))
	out.Flush()
	got := <-ch
	fmt.Fprintf(out, "trap got %s\n", unix.SignalName(got.(syscall.Signal)))
	out.Flush()
	os.Exit(code)
}
