package seccomp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The Load tests run in a re-executed test binary, since a filter cannot be
// removed once installed. Loading needs no root: the child sets
// no_new_privs first.
const (
	envCase    = "_CUBO_SECCOMP_TEST_CASE"
	envProfile = "_CUBO_SECCOMP_TEST_PROFILE"
	envDir     = "_CUBO_SECCOMP_TEST_DIR"
)

func TestMain(m *testing.M) {
	if c := os.Getenv(envCase); c != "" {
		os.Exit(child(c))
	}
	os.Exit(m.Run())
}

// child loads the profile on a locked thread, runs the case and prints
// "key value" lines for the parent to check.
func child(name string) int {
	if name == "sleep" {
		// The container process of TestRuncDifferential.
		time.Sleep(time.Minute)
		return 0
	}
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	var s specs.LinuxSeccomp
	if err := json.Unmarshal([]byte(os.Getenv(envProfile)), &s); err != nil {
		fmt.Println("error", err)
		return 1
	}
	dir := os.Getenv(envDir)
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fd, err := Load(&s)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("fd", fd)
	report := func(key string, err error) {
		var errno syscall.Errno
		switch {
		case err == nil:
			fmt.Println(key, 0)
		case errors.As(err, &errno):
			fmt.Println(key, int(errno))
		default:
			fmt.Println(key, err)
		}
	}
	sysErr := func(_, _ uintptr, errno syscall.Errno) error {
		if errno != 0 {
			return errno
		}
		return nil
	}
	switch name {
	case "basic":
		// unix.Mkdir uses mkdirat on amd64; the old syscall is raw.
		p, _ := unix.BytePtrFromString(filepath.Join(dir, "d"))
		report("mkdir", sysErr(unix.Syscall(unix.SYS_MKDIR, uintptr(unsafe.Pointer(p)), 0o755, 0)))
		report("mkdirat", unix.Mkdir(filepath.Join(dir, "e"), 0o755))
		_, err := unix.Getcwd(make([]byte, 4096))
		report("getcwd", err)
		var u unix.Utsname
		report("uname", unix.Uname(&u))
		report("uname-magic", sysErr(unix.Syscall(unix.SYS_UNAME, 0x5eccafe, 0, 0)))
		report("uname-magic-hi", sysErr(unix.Syscall(unix.SYS_UNAME, 0x1_0000_0000|0x5eccafe, 0, 0)))
	case "docker":
		report("getpid", sysErr(unix.Syscall(unix.SYS_GETPID, 0, 0, 0)))
		_, err := os.ReadFile("/proc/self/status")
		report("read", err)
		report("mkdir", unix.Mkdir(filepath.Join(dir, "d"), 0o755))
		report("keyctl", sysErr(unix.Syscall(unix.SYS_KEYCTL, 0, 0, 0)))
		report("add_key", sysErr(unix.Syscall6(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0, 0)))
		report("unshare", unix.Unshare(unix.CLONE_NEWUSER))
		report("new-syscall", sysErr(unix.Syscall(1000, 0, 0, 0)))
		// fork+exec runs on this thread, so the program inherits the
		// filter; the shell needs ordinary syscalls to work.
		out, err := exec.Command("/bin/sh", "-c", "grep ^Seccomp: /proc/self/status").Output()
		report("exec", err)
		fmt.Println("exec-out", strings.Join(strings.Fields(string(out)), ""))
	case "tsync":
		// Every thread of the process must be filtered, not only this one.
		ents, err := os.ReadDir("/proc/self/task")
		report("tasks", err)
		filtered := 0
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join("/proc/self/task", e.Name(), "status"))
			if bytes.Contains(b, []byte("Seccomp:\t2")) {
				filtered++
			}
		}
		fmt.Println("threads", len(ents)-filtered == 0 && len(ents) > 1)
	case "notify":
		if fd < 0 {
			return 1
		}
		// Answer from a thread without the filter: a goroutine that is
		// not locked never runs on this thread.
		done := make(chan error, 1)
		go func() { done <- answer(fd) }()
		report("mkdirat", unix.Mkdirat(unix.AT_FDCWD, filepath.Join(dir, "n"), 0o755))
		report("answer", <-done)
		_, err := os.Stat(filepath.Join(dir, "n"))
		fmt.Println("created", err == nil)
	case "kill":
		report("getppid", sysErr(unix.Syscall(unix.SYS_GETPPID, 0, 0, 0)))
	}
	return 0
}

// seccompNotif is struct seccomp_notif.
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

// seccompNotifResp is struct seccomp_notif_resp.
type seccompNotifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// answer receives one notification and fails the syscall with EXDEV,
// which no real mkdirat here would return.
func answer(fd int) error {
	var n seccompNotif
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n))); e != 0 {
		return fmt.Errorf("receive notification: %w", e)
	}
	if n.nr != unix.SYS_MKDIRAT || n.arch != unix.AUDIT_ARCH_X86_64 {
		return fmt.Errorf("notification for syscall %d arch %#x", n.nr, n.arch)
	}
	r := seccompNotifResp{id: n.id, error: -int32(unix.EXDEV)}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&r))); e != 0 {
		return fmt.Errorf("send response: %w", e)
	}
	return nil
}

// runChild runs a case in a fresh test binary and returns its report.
func runChild(t *testing.T, name string, s *specs.LinuxSeccomp) (map[string]string, error) {
	t.Helper()
	prof, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envCase+"="+name, envProfile+"="+string(prof), envDir+"="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	res := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		res[k] = v
	}
	if e, ok := res["error"]; ok {
		t.Fatalf("child %s: %s", name, e)
	}
	if runErr != nil {
		t.Logf("child %s: %v; stdout %q; stderr %q", name, runErr, out, stderr.String())
	}
	return res, runErr
}

func expect(t *testing.T, res map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s: got %q, want %q (report %v)", k, res[k], v, res)
		}
	}
}

func errno(e syscall.Errno) string { return fmt.Sprint(int(e)) }

func TestLoadBasic(t *testing.T) {
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "getcwd"}, Action: specs.ActErrno},
			{Names: []string{"uname"}, Action: specs.ActErrno, ErrnoRet: uptr(38), Args: []specs.LinuxSeccompArg{
				{Index: 0, Op: specs.OpEqualTo, Value: 0x5eccafe},
			}},
		},
	}
	res, err := runChild(t, "basic", s)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, map[string]string{
		"fd":          "-1",
		"mkdir":       errno(unix.EPERM),
		"mkdirat":     "0",
		"getcwd":      errno(unix.EPERM),
		"uname":       "0",
		"uname-magic": errno(unix.ENOSYS),
		// Only the low half matches: the filter must not let it through
		// as the bad pointer it is, nor return 38.
		"uname-magic-hi": errno(unix.EFAULT),
	})
}

func TestLoadDockerProfile(t *testing.T) {
	s := loadDockerProfile(t)
	res, err := runChild(t, "docker", s)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, map[string]string{
		"fd":          "-1",
		"getpid":      "0",
		"read":        "0",
		"mkdir":       "0",
		"keyctl":      errno(unix.EPERM),
		"add_key":     errno(unix.EPERM),
		"unshare":     errno(unix.EPERM),
		"new-syscall": errno(unix.ENOSYS),
		"exec":        "0",
		"exec-out":    "Seccomp:2",
	})
}

func TestLoadTsync(t *testing.T) {
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{flagTsync, specs.LinuxSeccompFlagSpecAllow},
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"keyctl"}, Action: specs.ActErrno}},
	}
	res, err := runChild(t, "tsync", s)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, res, map[string]string{"fd": "-1", "tasks": "0", "threads": "true"})
}

func TestLoadNotify(t *testing.T) {
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv},
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdirat"}, Action: specs.ActNotify}},
	}
	res, err := runChild(t, "notify", s)
	if err != nil {
		t.Fatal(err)
	}
	if res["fd"] == "" || strings.HasPrefix(res["fd"], "-") {
		t.Fatalf("listener fd: got %q, want >= 0", res["fd"])
	}
	expect(t, res, map[string]string{"mkdirat": errno(unix.EXDEV), "answer": "0", "created": "false"})
}

func TestLoadKillProcess(t *testing.T) {
	s := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActKillProcess}},
	}
	res, err := runChild(t, "kill", s)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: got %v, want killed", err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Fatalf("child: got %v, want killed by SIGSYS", ws)
	}
	if _, ok := res["getppid"]; ok {
		t.Fatalf("getppid returned in a killed child: %v", res)
	}
}
