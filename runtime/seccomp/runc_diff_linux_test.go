package seccomp

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestRuncDifferential runs a container under the installed runc (which
// compiles with libseccomp), reads the filter runc installed back with
// PTRACE_SECCOMP_GET_FILTER, and checks that our program returns the same
// action for a grid of syscall numbers, architectures and arguments. It only
// uses syscalls every libseccomp 2.5 knows, so the two syscall tables and
// the ENOSYS stub bounds agree.
func TestRuncDifferential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run runc and read its filter")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	A := func(i uint, op specs.LinuxSeccompOperator, v, v2 uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: i, Op: op, Value: v, ValueTwo: v2}
	}
	errnoRule := func(names []string, errno uint, args ...specs.LinuxSeccompArg) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: names, Action: specs.ActErrno, ErrnoRet: uptr(errno), Args: args}
	}
	// Rules exercising every operator on both halves, AND, OR, the same
	// argument twice, and unconditional rules before and after
	// conditional ones.
	rules := []specs.LinuxSyscall{
		errnoRule([]string{"keyctl"}, 10, A(0, specs.OpEqualTo, 0x100000005, 0)),
		errnoRule([]string{"keyctl"}, 11, A(1, specs.OpGreaterThan, 0xffffffff, 0)),
		errnoRule([]string{"add_key"}, 12, A(2, specs.OpLessThan, 0x200000000, 0), A(3, specs.OpGreaterEqual, 7, 0)),
		errnoRule([]string{"request_key"}, 13, A(0, specs.OpLessEqual, 0x1ffffffff, 0)),
		errnoRule([]string{"mount"}, 14, A(4, specs.OpNotEqual, 0x300000003, 0)),
		errnoRule([]string{"umount2"}, 15, A(1, specs.OpMaskedEqual, 0xff000000ff, 0x0100000002)),
		errnoRule([]string{"swapon"}, 16, A(0, specs.OpEqualTo, 1, 0), A(0, specs.OpEqualTo, 2, 0)),
		errnoRule([]string{"swapoff"}, 17, A(5, specs.OpGreaterThan, 3, 0)),
		errnoRule([]string{"swapoff"}, 18),
		errnoRule([]string{"reboot"}, 19),
		errnoRule([]string{"reboot"}, 20, A(0, specs.OpEqualTo, 1, 0)),
		errnoRule([]string{"chown32", "mkdir", "no_such_syscall"}, 21),
		errnoRule([]string{"pivot_root"}, 22, A(0, specs.OpGreaterEqual, 0x80000000, 0), A(1, specs.OpLessThan, 0x80000000, 0)),
		{Names: []string{"init_module"}, Action: specs.ActTrace, ErrnoRet: uptr(23)},
		{Names: []string{"delete_module"}, Action: specs.ActTrap},
		{Names: []string{"acct"}, Action: specs.ActLog},
		{Names: []string{"kexec_load"}, Action: specs.ActKillProcess},
	}
	// Docker's allow list without the syscalls newer than Linux 5.3 (435)
	// and uretprobe (6.11, numbered 335), which older libseccomp releases
	// do not know.
	docker := loadDockerProfile(t)
	for i := range docker.Syscalls {
		sc := &docker.Syscalls[i]
		sc.Names = slices.DeleteFunc(sc.Names, func(n string) bool {
			nr, ok := syscallsX86_64.lookup(n)
			return ok && nr >= 435 || n == "uretprobe"
		})
	}
	docker.Syscalls = append(docker.Syscalls, rules...)

	profiles := map[string]*specs.LinuxSeccomp{
		"allow-x86": {
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
			Syscalls:      rules,
		},
		"docker-plus-rules": docker,
	}
	for name, s := range profiles {
		t.Run(name, func(t *testing.T) {
			theirs := runcFilter(t, runc, s)
			ours := compile(t, s)
			t.Logf("runc %d instructions, ours %d", len(theirs), len(ours))
			compareFilters(t, ours, theirs)
		})
	}
}

func compareFilters(t *testing.T, ours, theirs []unix.SockFilter) {
	vals := []uint64{0, 1, 2, 3, 5, 7, 8, 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000,
		0x100000002, 0x100000005, 0x1ffffffff, 0x200000000, 0x300000003, 0xff000000ff,
		0x7e020000, 0x10000000, 0x20008, 0xffffffffffffffff}
	bad := 0
	for _, arch := range []uint32{archX86_64, archI386, unix.AUDIT_ARCH_AARCH64} {
		var nrs []uint32
		for nr := uint32(0); nr < 1100; nr++ {
			nrs = append(nrs, nr)
			if arch == archX86_64 {
				nrs = append(nrs, nr|x32SyscallBit)
			}
		}
		nrs = append(nrs, 0xffffffff)
		for _, nr := range nrs {
			for i := range 6 {
				for _, v := range vals {
					for _, fill := range []uint64{0, 6, 0xffffffff} {
						d := data{nr: nr, arch: arch}
						for j := range d.args {
							d.args[j] = fill
						}
						d.args[i] = v
						if a, b := run(t, ours, d), run(t, theirs, d); a != b {
							if bad++; bad <= 20 {
								t.Errorf("arch %#x nr %#x args %#x: ours %#x, runc %#x", arch, nr, d.args, a, b)
							}
						}
					}
				}
			}
		}
	}
	if bad > 20 {
		t.Errorf("%d differences in all", bad)
	}
}

// runcFilter starts a container with profile s under runc and returns the
// seccomp filter runc installed in it.
func runcFilter(t *testing.T, runc string, s *specs.LinuxSeccomp) []unix.SockFilter {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if f, err := elf.Open(exe); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				f.Close()
				t.Skip("test binary is dynamically linked; it cannot be the container process")
			}
		}
		f.Close()
	}
	bundle, root := t.TempDir(), t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"", "proc", "dev"} {
		if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, exe, filepath.Join(rootfs, "seccomp.test"))
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: []string{"/seccomp.test"},
			Env:  []string{envCase + "=sleep"},
			Cwd:  "/",
		},
		Root: &specs.Root{Path: "rootfs", Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}},
			Seccomp:    s,
		},
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.NewReplacer("/", "-").Replace(t.Name())
	pidFile := filepath.Join(bundle, "pid")
	// The container inherits runc's stdio: a pipe would keep Run waiting
	// for the container to exit, so errors go to a file.
	errFile, err := os.Create(filepath.Join(bundle, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	cmd := exec.Command(runc, "--root", root, "run", "-d", "--bundle", bundle, "--pid-file", pidFile, id)
	cmd.Stderr = errFile
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(errFile.Name())
		t.Fatalf("runc run: %v: %s", err, out)
	}
	t.Cleanup(func() {
		_ = exec.Command(runc, "--root", root, "delete", "-f", id).Run()
	})
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil {
		t.Fatal(err)
	}
	prog, err := readFilter(pid)
	if err != nil {
		t.Fatal(err)
	}
	return prog
}

// readFilter returns the first seccomp filter of process pid.
func readFilter(pid int) ([]unix.SockFilter, error) {
	// ptrace requests must come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		return nil, fmt.Errorf("seize %d: %w", pid, err)
	}
	defer unix.PtraceDetach(pid)
	if err := unix.PtraceInterrupt(pid); err != nil {
		return nil, fmt.Errorf("interrupt %d: %w", pid, err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		return nil, fmt.Errorf("wait %d: %w", pid, err)
	}
	n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0, 0, 0, 0)
	if e != 0 {
		return nil, fmt.Errorf("get filter size: %w", e)
	}
	prog := make([]unix.SockFilter, n)
	_, _, e = unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0, uintptr(unsafe.Pointer(&prog[0])), 0, 0)
	if e != 0 {
		return nil, fmt.Errorf("get filter: %w", e)
	}
	return prog, nil
}

func copyFile(t *testing.T, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
