package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// data is struct seccomp_data.
type data struct {
	nr   uint32
	arch uint32
	args [6]uint64
}

func (d data) bytes() []byte {
	b := make([]byte, 64)
	binary.LittleEndian.PutUint32(b[0:], d.nr)
	binary.LittleEndian.PutUint32(b[4:], d.arch)
	for i, a := range d.args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// run interprets the subset of classic BPF the compiler emits, with the
// checks the kernel's verifier makes for it: forward jumps inside the
// program, aligned loads inside seccomp_data, and a RET on every path.
func run(t *testing.T, prog []unix.SockFilter, d data) uint32 {
	t.Helper()
	mem := d.bytes()
	var acc uint32
	for pc := 0; ; pc++ {
		if pc >= len(prog) {
			t.Fatalf("pc %d ran off the end of a %d-instruction program", pc, len(prog))
		}
		in := prog[pc]
		jump := func(cond bool) {
			if cond {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		}
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K%4 != 0 || in.K+4 > 64 {
				t.Fatalf("pc %d: bad load offset %d", pc, in.K)
			}
			acc = binary.LittleEndian.Uint32(mem[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			jump(acc == in.K)
		case unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K:
			jump(acc > in.K)
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			jump(acc >= in.K)
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			jump(acc&in.K != 0)
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("pc %d: unexpected opcode %#x", pc, in.Code)
		}
	}
}

func compile(t *testing.T, s *specs.LinuxSeccomp) []unix.SockFilter {
	t.Helper()
	prog, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	if len(prog) == 0 || len(prog) > maxInsns {
		t.Fatalf("Compile: %d instructions", len(prog))
	}
	return prog
}

func uptr(v uint) *uint { return &v }

const (
	archX86_64 = unix.AUDIT_ARCH_X86_64
	archI386   = unix.AUDIT_ARCH_I386
	retAllow   = unix.SECCOMP_RET_ALLOW
	retKill    = unix.SECCOMP_RET_KILL_THREAD
	retEPERM   = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS  = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

func sys64(name string, args ...uint64) data {
	nr, ok := syscallsX86_64.lookup(name)
	if !ok {
		panic("no syscall " + name)
	}
	d := data{nr: nr, arch: archX86_64}
	copy(d.args[:], args)
	return d
}

type probe struct {
	d    data
	want uint32
}

func TestCompileSemantics(t *testing.T) {
	tests := []struct {
		name   string
		s      specs.LinuxSeccomp
		probes []probe
	}{
		{
			name: "names and default allow",
			s: specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"mkdir", "no_such_syscall", "getcwd"}, Action: specs.ActErrno},
				},
			},
			probes: []probe{
				{sys64("mkdir"), retEPERM},
				{sys64("getcwd"), retEPERM},
				{sys64("read"), retAllow},
				{data{nr: 5000, arch: archX86_64}, retAllow}, // no ENOSYS stub for allow
				{data{nr: 0xffffffff, arch: archX86_64}, retAllow},
			},
		},
		{
			name: "errno values",
			s: specs.LinuxSeccomp{
				DefaultAction:   specs.ActErrno,
				DefaultErrnoRet: uptr(uint(unix.EACCES)),
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"read", "write"}, Action: specs.ActAllow},
					{Names: []string{"uname"}, Action: specs.ActErrno, ErrnoRet: uptr(38)},
					{Names: []string{"mkdir"}, Action: specs.ActErrno},
					{Names: []string{"ptrace"}, Action: specs.ActTrace, ErrnoRet: uptr(7)},
					{Names: []string{"getppid"}, Action: specs.ActTrace},
					{Names: []string{"getpid"}, Action: specs.ActLog},
					{Names: []string{"kill"}, Action: specs.ActTrap},
					{Names: []string{"tkill"}, Action: specs.ActKill},
					{Names: []string{"tgkill"}, Action: specs.ActKillProcess},
					{Names: []string{"getuid"}, Action: specs.ActKillThread},
					{Names: []string{"getgid"}, Action: specs.ActNotify},
				},
			},
			probes: []probe{
				{sys64("read"), retAllow},
				{sys64("uname"), unix.SECCOMP_RET_ERRNO | 38},
				{sys64("mkdir"), retEPERM}, // errnoRet, not defaultErrnoRet
				{sys64("rmdir"), unix.SECCOMP_RET_ERRNO | uint32(unix.EACCES)},
				{sys64("ptrace"), unix.SECCOMP_RET_TRACE | 7},
				{sys64("getppid"), unix.SECCOMP_RET_TRACE | uint32(unix.EPERM)},
				{sys64("getpid"), unix.SECCOMP_RET_LOG},
				{sys64("kill"), unix.SECCOMP_RET_TRAP},
				{sys64("tkill"), retKill},
				{sys64("tgkill"), unix.SECCOMP_RET_KILL_PROCESS},
				{sys64("getuid"), retKill},
				{sys64("getgid"), unix.SECCOMP_RET_USER_NOTIF},
			},
		},
		{
			name: "architectures",
			s: specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchAARCH64},
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"mkdir"}, Action: specs.ActErrno},
				},
			},
			probes: []probe{
				{sys64("mkdir"), retEPERM},
				{data{nr: syscallsI386.nr("mkdir"), arch: archI386}, retKill},
				{data{nr: 0, arch: unix.AUDIT_ARCH_AARCH64}, retKill},
				{data{nr: syscallsX32.nr("mkdir"), arch: archX86_64}, retKill},
				{data{nr: syscallsX32.nr("read"), arch: archX86_64}, retKill},
				{data{nr: 0xffffffff, arch: archX86_64}, retAllow},
			},
		},
		{
			name: "x86 and x32",
			s: specs.LinuxSeccomp{
				DefaultAction: specs.ActErrno,
				Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"read", "chown32", "rt_sigaction"}, Action: specs.ActAllow},
					{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
						{Index: 0, Op: specs.OpEqualTo, Value: 0x100000008},
					}},
				},
			},
			probes: []probe{
				{sys64("read"), retAllow},
				{sys64("write"), retEPERM},
				{data{nr: syscallsI386.nr("read"), arch: archI386}, retAllow},
				{data{nr: syscallsI386.nr("chown32"), arch: archI386}, retAllow},
				{data{nr: syscallsI386.nr("write"), arch: archI386}, retEPERM},
				{data{nr: syscallsX32.nr("read"), arch: archX86_64}, retAllow},
				{data{nr: syscallsX32.nr("rt_sigaction"), arch: archX86_64}, retAllow},
				{data{nr: syscallsX86_64.nr("rt_sigaction"), arch: archX86_64}, retAllow},
				{data{nr: syscallsX32.nr("write"), arch: archX86_64}, retEPERM},
				// Above the profile's highest syscall: ENOSYS, per ABI,
				// and -1 too (runc).
				{data{nr: 0xffffffff, arch: archX86_64}, retENOSYS},
				{data{nr: 0xffffffff, arch: archI386}, retENOSYS},
				{data{nr: 1000, arch: archX86_64}, retENOSYS},
				{data{nr: 1000, arch: archI386}, retENOSYS},
				{data{nr: x32SyscallBit | 1000, arch: archX86_64}, retENOSYS},
				// x86 and x32 compare only the low 32 bits.
				{data{nr: syscallsI386.nr("personality"), arch: archI386, args: [6]uint64{8}}, retAllow},
				{data{nr: syscallsX32.nr("personality"), arch: archX86_64, args: [6]uint64{8}}, retAllow},
				{sys64("personality", 8), retEPERM},
				{sys64("personality", 0x100000008), retAllow},
			},
		},
		{
			name: "rules",
			s: specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{
					// AND within a rule.
					{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: uptr(1), Args: []specs.LinuxSeccompArg{
						{Index: 0, Op: specs.OpEqualTo, Value: 5},
						{Index: 2, Op: specs.OpGreaterThan, Value: 0o700},
					}},
					// OR between rules; the first match decides.
					{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: uptr(2), Args: []specs.LinuxSeccompArg{
						{Index: 0, Op: specs.OpEqualTo, Value: 6},
					}},
					{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: uptr(3), Args: []specs.LinuxSeccompArg{
						{Index: 0, Op: specs.OpGreaterEqual, Value: 5},
					}},
					// Same argument twice: runc ORs the conditions.
					{Names: []string{"socket"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
						{Index: 0, Op: specs.OpEqualTo, Value: 16},
						{Index: 0, Op: specs.OpEqualTo, Value: 17},
					}},
					// An unconditional rule wins over conditional ones, before or after.
					{Names: []string{"getcwd"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
						{Index: 0, Op: specs.OpEqualTo, Value: 1},
					}},
					{Names: []string{"getcwd", "chdir"}, Action: specs.ActErrno, ErrnoRet: uptr(9)},
					{Names: []string{"chdir"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
						{Index: 0, Op: specs.OpEqualTo, Value: 1},
					}},
					// The first unconditional rule wins.
					{Names: []string{"chdir"}, Action: specs.ActErrno, ErrnoRet: uptr(10)},
					// Same as the default action: skipped, so it does not
					// shadow the rule after it.
					{Names: []string{"fchdir"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
						{Index: 0, Op: specs.OpEqualTo, Value: 1},
					}},
					{Names: []string{"fchdir"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
						{Index: 1, Op: specs.OpEqualTo, Value: 2},
					}},
				},
			},
			probes: []probe{
				{sys64("mkdirat", 5, 0, 0o755), unix.SECCOMP_RET_ERRNO | 1},
				{sys64("mkdirat", 5, 0, 0o700), unix.SECCOMP_RET_ERRNO | 3},
				{sys64("mkdirat", 6, 0, 0o755), unix.SECCOMP_RET_ERRNO | 2},
				{sys64("mkdirat", 7), unix.SECCOMP_RET_ERRNO | 3},
				{sys64("mkdirat", 4, 0, 0o777), retAllow},
				{sys64("mkdirat", 0x100000005, 0, 0o777), unix.SECCOMP_RET_ERRNO | 3},
				{sys64("socket", 16), retEPERM},
				{sys64("socket", 17), retEPERM},
				{sys64("socket", 2), retAllow},
				{sys64("getcwd", 1), unix.SECCOMP_RET_ERRNO | 9},
				{sys64("getcwd", 0), unix.SECCOMP_RET_ERRNO | 9},
				{sys64("chdir", 1), unix.SECCOMP_RET_ERRNO | 9},
				{sys64("fchdir", 1, 2), retEPERM},
				{sys64("fchdir", 1, 3), retAllow},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prog := compile(t, &tc.s)
			for _, p := range tc.probes {
				if got := run(t, prog, p.d); got != p.want {
					t.Errorf("nr %#x arch %#x args %#x: got %#x, want %#x", p.d.nr, p.d.arch, p.d.args, got, p.want)
				}
			}
		})
	}
}

// TestCompileOperators checks every operator against Go's own unsigned
// comparisons on values chosen around the 32-bit halves.
func TestCompileOperators(t *testing.T) {
	values := []uint64{
		0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
		0x100000000, 0x100000001, 0x1ffffffff, 0x200000000, 0xffffffff00000000,
		0x8000000000000000, 0xfffffffffffffffe, 0xffffffffffffffff, 0x1234567800000000,
	}
	masks := []uint64{0, 0xff, 0xffffffff, 0xffffffff00000000, 0xff000000ff, 0xffffffffffffffff}
	ops := map[specs.LinuxSeccompOperator]func(a, v uint64) bool{
		specs.OpEqualTo:      func(a, v uint64) bool { return a == v },
		specs.OpNotEqual:     func(a, v uint64) bool { return a != v },
		specs.OpGreaterThan:  func(a, v uint64) bool { return a > v },
		specs.OpGreaterEqual: func(a, v uint64) bool { return a >= v },
		specs.OpLessThan:     func(a, v uint64) bool { return a < v },
		specs.OpLessEqual:    func(a, v uint64) bool { return a <= v },
	}
	const match = unix.SECCOMP_RET_ERRNO | 99
	check := func(t *testing.T, arg specs.LinuxSeccompArg, want func(a uint64) bool) {
		t.Helper()
		s := &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Architectures: []specs.Arch{specs.ArchX86},
			Syscalls: []specs.LinuxSyscall{{
				Names: []string{"ioctl"}, Action: specs.ActErrno, ErrnoRet: uptr(99),
				Args: []specs.LinuxSeccompArg{arg},
			}},
		}
		prog := compile(t, s)
		for _, a := range values {
			for _, arch := range []uint32{archX86_64, archI386} {
				d := data{nr: syscallsX86_64.nr("ioctl"), arch: arch}
				w := want(a)
				if arch == archI386 {
					d.nr = syscallsI386.nr("ioctl")
					// libseccomp compares the low halves on 32-bit ABIs.
					lo := arg
					lo.Value, lo.ValueTwo = uint64(uint32(arg.Value)), uint64(uint32(arg.ValueTwo))
					w = want32(lo, uint64(uint32(a)))
				}
				d.args[arg.Index] = a
				if got := run(t, prog, d) == match; got != w {
					t.Errorf("arch %#x: %s(arg%d=%#x, %#x, %#x) = %v, want %v", arch, arg.Op, arg.Index, a, arg.Value, arg.ValueTwo, got, w)
				}
			}
		}
	}
	for op, f := range ops {
		for _, v := range values {
			arg := specs.LinuxSeccompArg{Index: 3, Op: op, Value: v}
			check(t, arg, func(a uint64) bool { return f(a, v) })
		}
	}
	for _, m := range masks {
		for _, v := range values {
			arg := specs.LinuxSeccompArg{Index: 5, Op: specs.OpMaskedEqual, Value: m, ValueTwo: v & m}
			check(t, arg, func(a uint64) bool { return a&m == v&m })
		}
	}
	// Datum bits outside the mask are ignored, as in libseccomp.
	arg := specs.LinuxSeccompArg{Index: 0, Op: specs.OpMaskedEqual, Value: 0xff, ValueTwo: 0x1ff}
	check(t, arg, func(a uint64) bool { return a&0xff == 0xff })
}

func want32(arg specs.LinuxSeccompArg, a uint64) bool {
	v := arg.Value
	switch arg.Op {
	case specs.OpEqualTo:
		return a == v
	case specs.OpNotEqual:
		return a != v
	case specs.OpGreaterThan:
		return a > v
	case specs.OpGreaterEqual:
		return a >= v
	case specs.OpLessThan:
		return a < v
	case specs.OpLessEqual:
		return a <= v
	case specs.OpMaskedEqual:
		return a&v == arg.ValueTwo&v
	}
	panic(arg.Op)
}

func loadDockerProfile(t testing.TB) *specs.LinuxSeccomp {
	t.Helper()
	b, err := os.ReadFile("testdata/docker-default.json")
	if err != nil {
		t.Fatal(err)
	}
	var s specs.LinuxSeccomp
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func TestCompileDockerProfile(t *testing.T) {
	s := loadDockerProfile(t)
	prog := compile(t, s)
	var ja int
	for _, in := range prog {
		if in.Code == unix.BPF_JMP|unix.BPF_JA {
			ja++
		}
	}
	t.Logf("docker default profile: %d instructions, %d ja", len(prog), ja)
	if len(prog) < 256 {
		t.Fatalf("program of %d instructions is too small to test long jumps", len(prog))
	}
	const cloneNewUser, sigchld = unix.CLONE_NEWUSER, uint64(unix.SIGCHLD)
	i386 := func(name string, args ...uint64) data {
		d := data{nr: syscallsI386.nr(name), arch: archI386}
		copy(d.args[:], args)
		return d
	}
	x32 := func(name string) data { return data{nr: syscallsX32.nr(name), arch: archX86_64} }
	probes := []probe{
		{sys64("read"), retAllow},
		{sys64("write"), retAllow},
		{sys64("execve"), retAllow},
		{sys64("futex"), retAllow},
		{sys64("fchmodat2"), retAllow},
		{sys64("keyctl"), retEPERM},
		{sys64("add_key"), retEPERM},
		{sys64("mount"), retEPERM},
		{sys64("clone", sigchld), retAllow},
		{sys64("clone", sigchld|cloneNewUser), retEPERM},
		{sys64("clone3"), retENOSYS},
		{sys64("personality", 0), retAllow},
		{sys64("personality", 0x20000), retAllow},
		{sys64("personality", 1), retEPERM},
		{data{nr: 1000, arch: archX86_64}, retENOSYS},
		{i386("read"), retAllow},
		{i386("socketcall"), retAllow},
		{i386("keyctl"), retEPERM},
		{i386("clone", sigchld), retAllow},
		{i386("clone", cloneNewUser), retEPERM},
		{x32("read"), retAllow},
		{x32("keyctl"), retEPERM},
		{data{nr: 0, arch: unix.AUDIT_ARCH_AARCH64}, retKill},
	}
	for _, p := range probes {
		if got := run(t, prog, p.d); got != p.want {
			t.Errorf("nr %#x arch %#x args %#x: got %#x, want %#x", p.d.nr, p.d.arch, p.d.args, got, p.want)
		}
	}
	// Every allowed x86_64 name must still be allowed, whatever the layout.
	for _, sc := range s.Syscalls {
		if sc.Action != specs.ActAllow || len(sc.Args) > 0 {
			continue
		}
		for _, name := range sc.Names {
			if nr, ok := syscallsX86_64.lookup(name); ok {
				if got := run(t, prog, data{nr: nr, arch: archX86_64}); got != retAllow {
					t.Errorf("%s: got %#x, want allow", name, got)
				}
			}
		}
	}
}

// TestAssembleLongJumps checks both branches of conditional jumps whose
// targets are more than 255 instructions away.
func TestAssembleLongJumps(t *testing.T) {
	for _, gap := range []int{250, 254, 255, 256, 300, 1000} {
		var a assembler
		lt, lf := a.newLabel(), a.newLabel()
		a.loadAbs(offNr)
		a.jump(unix.BPF_JEQ, 1, lt, lf)
		for range gap {
			a.ret(0xdead)
		}
		a.bind(lf)
		a.jump(unix.BPF_JEQ, 2, lt, next) // far true, near false
		a.ret(2)
		for range gap {
			a.ret(0xbeef)
		}
		a.bind(lt)
		a.ret(1)
		prog, err := a.assemble()
		if err != nil {
			t.Fatalf("gap %d: %v", gap, err)
		}
		for nr, want := range map[uint32]uint32{1: 1, 2: 1, 3: 2} {
			if got := run(t, prog, data{nr: nr}); got != want {
				t.Errorf("gap %d nr %d: got %#x, want %#x", gap, nr, got, want)
			}
		}
	}
}

func TestCompileErrors(t *testing.T) {
	allow := specs.ActAllow
	tests := []struct {
		name string
		s    specs.LinuxSeccomp
		want string
	}{
		{"unknown default action", specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_NOPE"}, `action "SCMP_ACT_NOPE": unknown`},
		{"notify default", specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, "cannot be the default action"},
		{"unknown action", specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: "x"}}}, `action "x": unknown`},
		{"unknown op", specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_XX"}}}}}, `operator "SCMP_CMP_XX": unknown`},
		{"arg index", specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "argument index 6"},
		{"errno range", specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, ErrnoRet: uptr(70000)}}}, "errno 70000 out of range"},
		{"unknown arch", specs.LinuxSeccomp{DefaultAction: allow, Architectures: []specs.Arch{"SCMP_ARCH_VAX"}}, `architecture "SCMP_ARCH_VAX": unknown`},
		{"unknown flag", specs.LinuxSeccomp{DefaultAction: allow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NOPE"}}, `flag "SECCOMP_FILTER_FLAG_NOPE": unknown`},
		{"wait killable without notify", specs.LinuxSeccomp{DefaultAction: allow, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}}, "needs an SCMP_ACT_NOTIFY rule"},
		{"notify write", specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read", "write"}, Action: specs.ActNotify}}}, "write syscall"},
		{"empty name", specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{""}, Action: specs.ActErrno}}}, "empty syscall name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(&tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile: got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestCompileTooLong(t *testing.T) {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	for i := range 1000 {
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names: []string{"ioctl"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 1, Op: specs.OpEqualTo, Value: uint64(i) << 32}, {Index: 2, Op: specs.OpLessThan, Value: 1}},
		})
	}
	_, err := Compile(s)
	if !errors.Is(err, ErrProgramTooLong) {
		t.Fatalf("Compile: got %v, want ErrProgramTooLong", err)
	}
}

func TestCompileDisabled(t *testing.T) {
	for _, s := range []*specs.LinuxSeccomp{nil, {}} {
		prog, err := Compile(s)
		if prog != nil || err != nil {
			t.Errorf("Compile(%v) = %d instructions, %v; want nil, nil", s, len(prog), err)
		}
		fd, err := Load(s)
		if fd != -1 || err != nil {
			t.Errorf("Load(%v) = %d, %v; want -1, nil", s, fd, err)
		}
	}
}

func TestSyscallTables(t *testing.T) {
	for _, c := range []struct {
		table syscallTable
		name  string
		want  uint32
	}{
		{syscallsX86_64, "read", 0},
		{syscallsX86_64, "mkdir", unix.SYS_MKDIR},
		{syscallsX86_64, "getcwd", unix.SYS_GETCWD},
		{syscallsX86_64, "keyctl", unix.SYS_KEYCTL},
		{syscallsX86_64, "clone3", 435},
		{syscallsX86_64, "fchmodat2", 452},
		{syscallsI386, "mkdir", 39},
		{syscallsI386, "socketcall", 102},
		{syscallsX32, "read", x32SyscallBit},
		{syscallsX32, "rt_sigaction", x32SyscallBit | 512},
	} {
		if got, ok := c.table.lookup(c.name); !ok || got != c.want {
			t.Errorf("%s: got %d (%v), want %d", c.name, got, ok, c.want)
		}
	}
	if _, ok := syscallsX86_64.lookup("chown32"); ok {
		t.Errorf("chown32 is not an x86_64 syscall")
	}
}

// nr is lookup for tests that know the name exists.
func (t syscallTable) nr(name string) uint32 {
	nr, _ := t.lookup(name)
	return nr
}
