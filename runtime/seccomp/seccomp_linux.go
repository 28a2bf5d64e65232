package seccomp

//go:generate go run mksyscalls.go -o zsyscalls_linux.go

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrProgramTooLong is returned (wrapped) by Compile and Load when the
// profile needs more than BPF_MAXINSNS (4096) instructions, the most the
// kernel accepts in one filter.
var ErrProgramTooLong = errors.New("seccomp program too long")

const (
	maxInsns      = 4096 // BPF_MAXINSNS
	x32SyscallBit = 0x40000000

	// Offsets in struct seccomp_data. The kernel fills args as 64-bit
	// little-endian words on x86, so the low half comes first.
	offNr   = 0
	offArch = 4
	offArgs = 16

	// skipNr is syscall number -1, which ptrace uses to skip a syscall.
	skipNr = 0xffffffff
)

// flagTsync is not defined by runtime-spec, but runc accepts it.
const flagTsync specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_TSYNC"

// abi is one syscall numbering the filter has to handle.
type abi struct {
	table syscallTable
	// wide is true when arguments are 64 bits wide. libseccomp compares
	// only the low 32 bits on x86 and on x32 (an ILP32 ABI), and so do we.
	wide bool
}

var (
	abiX86_64 = &abi{table: syscallsX86_64, wide: true}
	abiX86    = &abi{table: syscallsI386}
	abiX32    = &abi{table: syscallsX32}
)

// syscallTable is a generated syscall name to number table, sorted by name.
type syscallTable []struct {
	name string
	nr   uint32
}

func (t syscallTable) lookup(name string) (uint32, bool) {
	i, ok := slices.BinarySearchFunc(t, name, func(e struct {
		name string
		nr   uint32
	}, name string) int {
		return strings.Compare(e.name, name)
	})
	if !ok {
		return 0, false
	}
	return t[i].nr, true
}

// foreignArches are the runtime-spec architecture names that can never be
// seen by an x86_64 kernel. libseccomp would emit a section for them that
// never matches, so they are accepted and left out.
var foreignArches = []specs.Arch{
	specs.ArchARM, specs.ArchAARCH64, specs.ArchMIPS, specs.ArchMIPS64,
	specs.ArchMIPS64N32, specs.ArchMIPSEL, specs.ArchMIPSEL64,
	specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64, specs.ArchPPC64LE,
	specs.ArchS390, specs.ArchS390X, specs.ArchPARISC, specs.ArchPARISC64,
	specs.ArchRISCV64, specs.ArchLOONGARCH64, specs.ArchM68K, specs.ArchSH,
	specs.ArchSHEB,
}

type rule struct {
	ret   uint32
	conds []specs.LinuxSeccompArg // all must hold
}

// entry is what the filter does with one syscall number.
type entry struct {
	uncond bool
	ret    uint32 // when uncond
	rules  []rule // tried in order when !uncond
}

type abiFilter struct {
	*abi
	entries map[uint32]*entry
	max     uint32 // highest syscall number the profile names
}

// Compile turns the profile into a classic BPF program for x86_64 plus the
// extra architectures it lists (see the package documentation for the exact
// semantics). It returns a nil program and no error when s is nil or has
// neither a default action nor syscalls, which runc treats as seccomp
// disabled. It returns an error for unknown actions, operators, flags or
// architecture names, for argument indexes above 5, for errno values above
// 65535, for SCMP_ACT_NOTIFY as the default action or on write, and
// ErrProgramTooLong when the program exceeds 4096 instructions.
func Compile(s *specs.LinuxSeccomp) ([]unix.SockFilter, error) {
	if s == nil || s.DefaultAction == "" && len(s.Syscalls) == 0 {
		return nil, nil
	}
	defRet, err := actionRet(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp default action: %w", err)
	}
	// The init sends the listener fd after Load; every syscall it makes
	// would wait for an agent that does not have the fd yet.
	if s.DefaultAction == specs.ActNotify {
		return nil, errors.New("seccomp default action: SCMP_ACT_NOTIFY cannot be the default action")
	}
	if _, err := filterFlags(s); err != nil {
		return nil, err
	}

	abis := []*abiFilter{{abi: abiX86_64}}
	var x86, x32 *abiFilter
	for _, a := range s.Architectures {
		switch {
		case a == specs.ArchX86_64:
		case a == specs.ArchX86:
			if x86 == nil {
				x86 = &abiFilter{abi: abiX86}
				abis = append(abis, x86)
			}
		case a == specs.ArchX32:
			if x32 == nil {
				x32 = &abiFilter{abi: abiX32}
				abis = append(abis, x32)
			}
		case slices.Contains(foreignArches, a):
		default:
			return nil, fmt.Errorf("seccomp architecture %q: unknown", a)
		}
	}
	for _, f := range abis {
		f.entries = make(map[uint32]*entry)
	}

	for i, sc := range s.Syscalls {
		if err := addSyscall(abis, defRet, &sc); err != nil {
			return nil, fmt.Errorf("seccomp syscalls[%d] %v: %w", i, sc.Names, err)
		}
	}

	enosys := true
	switch s.DefaultAction {
	// A tracer or a logging/allowing default is expected to handle new
	// syscalls itself, so runc adds no ENOSYS stub for them.
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
		enosys = false
	}

	var a assembler
	gen(&a, abis, defRet, enosys, x86, x32)
	return a.assemble()
}

// addSyscall records one profile rule in every ABI that knows its names.
func addSyscall(abis []*abiFilter, defRet uint32, sc *specs.LinuxSyscall) error {
	ret, err := actionRet(sc.Action, sc.ErrnoRet)
	if err != nil {
		return err
	}
	var seen [6]int
	for _, arg := range sc.Args {
		if arg.Index > 5 {
			return fmt.Errorf("argument index %d: syscalls have 6 arguments", arg.Index)
		}
		switch arg.Op {
		case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
			specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		default:
			return fmt.Errorf("argument operator %q: unknown", arg.Op)
		}
		seen[arg.Index]++
	}
	rules := []rule{{ret: ret, conds: sc.Args}}
	// libseccomp refuses two conditions on one argument in a rule, so runc
	// adds each condition as a separate rule, which ORs them.
	if slices.ContainsFunc(seen[:], func(n int) bool { return n > 1 }) {
		rules = rules[:0]
		for _, arg := range sc.Args {
			rules = append(rules, rule{ret: ret, conds: []specs.LinuxSeccompArg{arg}})
		}
	}
	for _, name := range sc.Names {
		if name == "" {
			return errors.New("empty syscall name")
		}
		// The init reports the listener fd to its parent with write
		// after Load, which would wait on an agent that never gets the fd
		// (runc refuses this too).
		if sc.Action == specs.ActNotify && name == "write" {
			return errors.New("SCMP_ACT_NOTIFY cannot be used for the write syscall")
		}
		for _, f := range abis {
			nr, ok := f.table.lookup(name)
			if !ok {
				continue
			}
			f.max = max(f.max, nr)
			// Same as the default: libseccomp would refuse the rule and
			// runc skips it.
			if ret == defRet {
				continue
			}
			e := f.entries[nr]
			if e == nil {
				e = &entry{}
				f.entries[nr] = e
			}
			switch {
			case e.uncond:
				// libseccomp keeps the first unconditional rule.
			case len(sc.Args) == 0:
				*e = entry{uncond: true, ret: ret}
			default:
				e.rules = append(e.rules, rules...)
			}
		}
	}
	return nil
}

// actionRet maps an OCI action to its SECCOMP_RET_* value.
func actionRet(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint(unix.EPERM)
	if errnoRet != nil {
		data = *errnoRet
	}
	if (act == specs.ActErrno || act == specs.ActTrace) && data > unix.SECCOMP_RET_DATA {
		return 0, fmt.Errorf("action %s: errno %d out of range", act, data)
	}
	switch act {
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | uint32(data), nil
	case specs.ActTrace:
		return unix.SECCOMP_RET_TRACE | uint32(data), nil
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return unix.SECCOMP_RET_USER_NOTIF, nil
	}
	return 0, fmt.Errorf("action %q: unknown", act)
}

// gen emits the whole filter:
//
//	ld arch
//	jeq AUDIT_ARCH_X86_64 -> x86_64
//	jeq AUDIT_ARCH_I386   -> x86       (if listed)
//	ret KILL_THREAD                    (bad arch)
//	x86_64: ld nr; nr >= X32 bit? (x32 listed -> x32 tree; -1 -> default; else KILL_THREAD)
//	        x86_64 tree
//	x32:    x32 tree
//	x86:    ld nr; x86 tree
func gen(a *assembler, abis []*abiFilter, defRet uint32, enosys bool, x86, x32 *abiFilter) {
	l64, l86, lx32 := a.newLabel(), a.newLabel(), a.newLabel()
	a.loadAbs(offArch)
	a.jump(unix.BPF_JEQ, unix.AUDIT_ARCH_X86_64, l64, next)
	if x86 != nil {
		a.jump(unix.BPF_JEQ, unix.AUDIT_ARCH_I386, l86, next)
	}
	a.ret(unix.SECCOMP_RET_KILL_THREAD)

	a.bind(l64)
	a.loadAbs(offNr)
	tree64 := a.newLabel()
	if x32 == nil {
		// An x32 syscall without SCMP_ARCH_X32 is a bad architecture,
		// but -1 gets the default action (libseccomp, and runc's stub
		// leaves numbers with the x32 bit alone here).
		a.jump(unix.BPF_JGE, x32SyscallBit, next, tree64)
		a.jump(unix.BPF_JEQ, skipNr, next, lx32)
		a.ret(defRet)
		a.bind(lx32)
		a.ret(unix.SECCOMP_RET_KILL_THREAD)
	} else {
		// -1 has the x32 bit too, and gets what the x32 tree says for
		// it, like with runc (ENOSYS when the stub applies).
		a.jump(unix.BPF_JGE, x32SyscallBit, lx32, tree64)
	}
	a.bind(tree64)
	genTree(a, abis[0], defRet, enosys)
	if x32 != nil {
		a.bind(lx32)
		genTree(a, x32, defRet, enosys)
	}
	if x86 != nil {
		a.bind(l86)
		a.loadAbs(offNr)
		genTree(a, x86, defRet, enosys)
	}
}

// segment covers syscall numbers from lo up to the next segment's lo. It
// either returns ret or, for a syscall with conditional rules, runs them.
type segment struct {
	lo  uint32
	ret uint32
	e   *entry
}

// segments splits the 32-bit syscall number space into runs with the same
// outcome, so the dispatch is a binary search over ranges rather than a test
// per syscall.
func segments(f *abiFilter, defRet uint32, enosys bool) []segment {
	nrs := make([]uint32, 0, len(f.entries))
	for nr := range f.entries {
		nrs = append(nrs, nr)
	}
	slices.Sort(nrs)

	var segs []segment
	add := func(s segment) {
		if n := len(segs); n > 0 && segs[n-1].lo == s.lo {
			segs = segs[:n-1] // empty run
		}
		if n := len(segs); n > 0 && s.e == nil && segs[n-1].e == nil && segs[n-1].ret == s.ret {
			return
		}
		segs = append(segs, s)
	}
	add(segment{lo: 0, ret: defRet})
	for _, nr := range nrs {
		e := f.entries[nr]
		if e.uncond {
			add(segment{lo: nr, ret: e.ret})
		} else {
			add(segment{lo: nr, e: e})
		}
		if nr < skipNr {
			add(segment{lo: nr + 1, ret: defRet})
		}
	}
	// runc adds no stub for an architecture the profile names nothing for.
	if enosys && f.max > 0 {
		add(segment{lo: f.max + 1, ret: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	}
	return segs
}

func genTree(a *assembler, f *abiFilter, defRet uint32, enosys bool) {
	segs := segments(f, defRet, enosys)
	var walk func(segs []segment)
	walk = func(segs []segment) {
		if len(segs) == 1 {
			genLeaf(a, f.wide, segs[0], defRet)
			return
		}
		mid := len(segs) / 2
		right := a.newLabel()
		a.jump(unix.BPF_JGE, segs[mid].lo, right, next)
		walk(segs[:mid])
		a.bind(right)
		walk(segs[mid:])
	}
	walk(segs)
}

func genLeaf(a *assembler, wide bool, s segment, defRet uint32) {
	if s.e == nil {
		a.ret(s.ret)
		return
	}
	for _, r := range s.e.rules {
		fail := a.newLabel()
		for _, c := range r.conds {
			genCond(a, wide, c, fail)
		}
		a.ret(r.ret)
		a.bind(fail)
	}
	a.ret(defRet)
}

// genCond emits code that falls through when c holds and jumps to fail
// otherwise. 64-bit values are compared high half first, both unsigned.
func genCond(a *assembler, wide bool, c specs.LinuxSeccompArg, fail label) {
	lo := uint32(offArgs + 8*c.Index)
	hi := lo + 4
	vl, vh := uint32(c.Value), uint32(c.Value>>32)
	if c.Op == specs.OpMaskedEqual {
		// libseccomp masks the datum too, so bits outside the mask in
		// valueTwo are ignored rather than making the rule never match.
		dl, dh := uint32(c.ValueTwo)&vl, uint32(c.ValueTwo>>32)&vh
		maskedEq := func(off, mask, datum uint32) {
			if mask == 0 {
				return // (x & 0) == 0 always holds
			}
			a.loadAbs(off)
			if mask != 0xffffffff {
				a.and(mask)
			}
			a.jump(unix.BPF_JEQ, datum, next, fail)
		}
		if wide {
			maskedEq(hi, vh, dh)
		}
		maskedEq(lo, vl, dl)
		return
	}
	if !wide {
		a.loadAbs(lo)
		switch c.Op {
		case specs.OpEqualTo:
			a.jump(unix.BPF_JEQ, vl, next, fail)
		case specs.OpNotEqual:
			a.jump(unix.BPF_JEQ, vl, fail, next)
		case specs.OpGreaterThan:
			a.jump(unix.BPF_JGT, vl, next, fail)
		case specs.OpGreaterEqual:
			a.jump(unix.BPF_JGE, vl, next, fail)
		case specs.OpLessThan:
			a.jump(unix.BPF_JGE, vl, fail, next)
		case specs.OpLessEqual:
			a.jump(unix.BPF_JGT, vl, fail, next)
		}
		return
	}
	ok := a.newLabel()
	a.loadAbs(hi)
	switch c.Op {
	case specs.OpEqualTo:
		a.jump(unix.BPF_JEQ, vh, next, fail)
		a.loadAbs(lo)
		a.jump(unix.BPF_JEQ, vl, next, fail)
	case specs.OpNotEqual:
		a.jump(unix.BPF_JEQ, vh, next, ok)
		a.loadAbs(lo)
		a.jump(unix.BPF_JEQ, vl, fail, next)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		a.jump(unix.BPF_JGT, vh, ok, next)
		a.jump(unix.BPF_JEQ, vh, next, fail)
		a.loadAbs(lo)
		op := uint16(unix.BPF_JGT)
		if c.Op == specs.OpGreaterEqual {
			op = unix.BPF_JGE
		}
		a.jump(op, vl, next, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		a.jump(unix.BPF_JGT, vh, fail, next)
		a.jump(unix.BPF_JEQ, vh, next, ok)
		a.loadAbs(lo)
		// lo < vl is !(lo >= vl); lo <= vl is !(lo > vl).
		op := uint16(unix.BPF_JGE)
		if c.Op == specs.OpLessEqual {
			op = unix.BPF_JGT
		}
		a.jump(op, vl, fail, next)
	}
	a.bind(ok)
}

// filterFlags maps s.Flags to SECCOMP_FILTER_FLAG_* bits.
func filterFlags(s *specs.LinuxSeccomp) (uintptr, error) {
	var flags uintptr
	if s.Flags == nil {
		// runc's default when the profile says nothing (not even []):
		// skip the Speculative Store Bypass mitigation seccomp would
		// otherwise force on the container.
		flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
	}
	for _, f := range s.Flags {
		switch f {
		case flagTsync:
			flags |= unix.SECCOMP_FILTER_FLAG_TSYNC
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
			flags |= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
		default:
			return 0, fmt.Errorf("seccomp flag %q: unknown", f)
		}
	}
	if slices.ContainsFunc(s.Syscalls, func(sc specs.LinuxSyscall) bool {
		return sc.Action == specs.ActNotify && len(sc.Names) > 0
	}) {
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	if flags&unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0 && flags&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER == 0 {
		// The kernel would fail with a bare EINVAL.
		return 0, errors.New("seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: needs an SCMP_ACT_NOTIFY rule")
	}
	if flags&unix.SECCOMP_FILTER_FLAG_TSYNC != 0 && flags&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
		// TSYNC reports a failing thread id in the return value, which
		// NEW_LISTENER needs for the fd; TSYNC_ESRCH makes it an error.
		flags |= unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
	}
	return flags, nil
}

// Load compiles s and installs it with seccomp(2) SECCOMP_SET_MODE_FILTER.
// The flags come from s.Flags (SECCOMP_FILTER_FLAG_TSYNC, _LOG, _SPEC_ALLOW,
// _WAIT_KILLABLE_RECV; SPEC_ALLOW alone when s.Flags is nil, like runc),
// plus NEW_LISTENER when a rule uses SCMP_ACT_NOTIFY.
//
// It returns the notification listener fd (close-on-exec, owned by the
// caller) or -1 when no rule uses SCMP_ACT_NOTIFY. A nil or empty profile
// loads nothing and returns -1 and no error. Errors from Compile are returned
// as is; a refused load is returned with the errno wrapped. Only amd64 is
// supported.
//
// Preconditions: the OS thread is locked, since without TSYNC the filter
// only applies to the calling thread, and no_new_privs is set or the caller
// has CAP_SYS_ADMIN.
func Load(s *specs.LinuxSeccomp) (listenerFd int, err error) {
	prog, err := Compile(s)
	if err != nil || prog == nil {
		return -1, err
	}
	// The program's native section is x86_64; elsewhere it would kill the
	// first syscall as a bad architecture.
	if runtime.GOARCH != "amd64" {
		return -1, fmt.Errorf("load seccomp filter: architecture %s is not supported", runtime.GOARCH)
	}
	flags, err := filterFlags(s)
	if err != nil {
		return -1, err
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return -1, fmt.Errorf("load seccomp filter (flags %#x): %w", flags, errno)
	}
	if flags&unix.SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
		return int(r), nil
	}
	if r != 0 {
		return -1, fmt.Errorf("load seccomp filter: thread %d cannot be synchronized", r)
	}
	return -1, nil
}
