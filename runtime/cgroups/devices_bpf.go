package cgroups

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// bpfInsn is struct bpf_insn.
type bpfInsn struct {
	code uint8
	regs uint8 // dst in the low nibble, src in the high one
	off  int16
	imm  int32
}

// Opcodes used by the device program (linux/bpf.h, linux/bpf_common.h).
const (
	opLdxMemW  = 0x61 // BPF_LDX|BPF_MEM|BPF_W
	opMov32Reg = 0xbc // BPF_ALU|BPF_MOV|BPF_X
	opAnd32Imm = 0x54 // BPF_ALU|BPF_AND|BPF_K
	opRsh32Imm = 0x74 // BPF_ALU|BPF_RSH|BPF_K
	opMov64Imm = 0xb7 // BPF_ALU64|BPF_MOV|BPF_K
	opJeqImm   = 0x15 // BPF_JMP|BPF_JEQ|BPF_K
	opJneImm   = 0x55 // BPF_JMP|BPF_JNE|BPF_K
	opExit     = 0x95 // BPF_JMP|BPF_EXIT
)

// Registers of the device program.
const (
	rRet    = 0
	rCtx    = 1
	rAccTyp = 2 // ctx->access_type
	rType   = 3 // its low 16 bits: BPF_DEVCG_DEV_*
	rAccess = 4 // its high 16 bits: BPF_DEVCG_ACC_*
	rMajor  = 5
	rMinor  = 6
	rTmp    = 7
)

// Device types as the kernel passes them (BPF_DEVCG_DEV_BLOCK/CHAR).
const (
	devBlock = 1
	devChar  = 2
)

func insn(code, dst, src uint8, off int16, imm int32) bpfInsn {
	return bpfInsn{code: code, regs: dst | src<<4, off: off, imm: imm}
}

// deviceProgram compiles a rule list into a BPF_PROG_TYPE_CGROUP_DEVICE
// program. It reads struct bpf_cgroup_dev_ctx {access_type, major, minor},
// checks the emulated v1 exceptions in turn, and returns 1 (allow) or 0.
//
// An allow exception needs every requested access bit; a deny exception
// fires on any of them: the kernel's v1 match_exception and
// match_exception_partial.
func deviceProgram(devs []specs.LinuxDeviceCgroup) ([]bpfInsn, error) {
	rules, err := normaliseDevices(devs)
	if err != nil {
		return nil, err
	}
	st := emulateDevices(rules)
	prog := []bpfInsn{
		insn(opLdxMemW, rAccTyp, rCtx, 0, 0),
		insn(opMov32Reg, rType, rAccTyp, 0, 0),
		insn(opAnd32Imm, rType, 0, 0, 0xffff),
		insn(opMov32Reg, rAccess, rAccTyp, 0, 0),
		insn(opRsh32Imm, rAccess, 0, 0, 16),
		insn(opLdxMemW, rMajor, rCtx, 4, 0),
		insn(opLdxMemW, rMinor, rCtx, 8, 0),
	}
	verdict := int32(0)
	if !st.defaultAllow {
		verdict = 1
	}
	for _, e := range st.exceptions {
		// Each jump skips to the end of this block; the offset is filled in
		// once the block's length is known.
		var block []bpfInsn
		var jumps []int
		skipIf := func(code, reg uint8, imm int32) {
			jumps = append(jumps, len(block))
			block = append(block, insn(code, reg, 0, 0, imm))
		}
		switch e.typ {
		case 'b':
			skipIf(opJneImm, rType, devBlock)
		case 'c':
			skipIf(opJneImm, rType, devChar)
		}
		if e.access != accAll {
			block = append(block, insn(opMov32Reg, rTmp, rAccess, 0, 0))
			if st.defaultAllow {
				block = append(block, insn(opAnd32Imm, rTmp, 0, 0, int32(e.access)))
				skipIf(opJeqImm, rTmp, 0)
			} else {
				block = append(block, insn(opAnd32Imm, rTmp, 0, 0, int32(accAll&^e.access)))
				skipIf(opJneImm, rTmp, 0)
			}
		}
		if e.major >= 0 {
			skipIf(opJneImm, rMajor, int32(e.major))
		}
		if e.minor >= 0 {
			skipIf(opJneImm, rMinor, int32(e.minor))
		}
		block = append(block, insn(opMov64Imm, rRet, 0, 0, verdict), insn(opExit, 0, 0, 0, 0))
		for _, j := range jumps {
			block[j].off = int16(len(block) - j - 1)
		}
		prog = append(prog, block...)
	}
	return append(prog,
		insn(opMov64Imm, rRet, 0, 0, 1-verdict),
		insn(opExit, 0, 0, 0, 0),
	), nil
}

// setDevicesV2 replaces the device program of a v2 cgroup with one that
// implements devs. The new program is attached before the old ones are
// detached, so there is no moment without a filter.
func setDevicesV2(dir string, devs []specs.LinuxDeviceCgroup) error {
	prog, err := deviceProgram(devs)
	if err != nil {
		return err
	}
	progFd, err := loadDeviceProgram(prog)
	if err != nil {
		return fmt.Errorf("load device program for %s: %w", dir, err)
	}
	defer unix.Close(progFd)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	defer d.Close()
	if err := attachDeviceProgram(int(d.Fd()), progFd); err != nil {
		return fmt.Errorf("attach device program to %s: %w", dir, err)
	}
	return nil
}

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
		if errno == unix.EINTR || errno == unix.EAGAIN && cmd == unix.BPF_PROG_LOAD {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return r, nil
	}
}

// progLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to prog_flags.
type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
}

func loadDeviceProgram(prog []bpfInsn) (int, error) {
	// The program calls no helpers, so any licence string is accepted.
	license := []byte("Apache\x00")
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(prog)),
		insns:    uint64(uintptr(unsafe.Pointer(&prog[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
	}
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err == nil {
		runtime.KeepAlive(prog)
		runtime.KeepAlive(license)
		return int(fd), nil
	}
	// Load again with the verifier log, only to explain the failure.
	logBuf := make([]byte, 64<<10)
	attr.logLevel = 1
	attr.logSize = uint32(len(logBuf))
	attr.logBuf = uint64(uintptr(unsafe.Pointer(&logBuf[0])))
	if fd, err2 := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr)); err2 == nil {
		runtime.KeepAlive(prog)
		runtime.KeepAlive(license)
		return int(fd), nil
	}
	runtime.KeepAlive(prog)
	runtime.KeepAlive(license)
	if n := indexNul(logBuf); n > 0 {
		return -1, fmt.Errorf("%w: verifier: %s", err, logBuf[:n])
	}
	return -1, err
}

func indexNul(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// progAttachAttr is the BPF_PROG_ATTACH/DETACH part of union bpf_attr.
type progAttachAttr struct {
	targetFd     uint32
	attachBpfFd  uint32
	attachType   uint32
	attachFlags  uint32
	replaceBpfFd uint32
}

// progQueryAttr is the BPF_PROG_QUERY part of union bpf_attr.
type progQueryAttr struct {
	targetFd    uint32
	attachType  uint32
	queryFlags  uint32
	attachFlags uint32
	progIDs     uint64
	progCnt     uint32
	_           uint32
}

// progGetFdAttr is the BPF_PROG_GET_FD_BY_ID part of union bpf_attr.
type progGetFdAttr struct {
	progID    uint32
	nextID    uint32
	openFlags uint32
}

// queryDevicePrograms returns the ids of the device programs attached
// directly to the cgroup and the flags they were attached with.
func queryDevicePrograms(cgroupFd int) ([]uint32, uint32, error) {
	ids := make([]uint32, 64)
	attr := progQueryAttr{
		targetFd:   uint32(cgroupFd),
		attachType: unix.BPF_CGROUP_DEVICE,
		progIDs:    uint64(uintptr(unsafe.Pointer(&ids[0]))),
		progCnt:    uint32(len(ids)),
	}
	_, err := bpf(unix.BPF_PROG_QUERY, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	runtime.KeepAlive(ids)
	if err != nil {
		return nil, 0, err
	}
	return ids[:attr.progCnt], attr.attachFlags, nil
}

func attachDeviceProgram(cgroupFd, progFd int) error {
	old, flags, err := queryDevicePrograms(cgroupFd)
	if err != nil {
		return fmt.Errorf("query attached programs: %w", err)
	}
	attach := func(flags uint32) error {
		attr := progAttachAttr{
			targetFd:    uint32(cgroupFd),
			attachBpfFd: uint32(progFd),
			attachType:  unix.BPF_CGROUP_DEVICE,
			attachFlags: flags,
		}
		_, err := bpf(unix.BPF_PROG_ATTACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		return err
	}
	if len(old) > 0 && flags&unix.BPF_F_ALLOW_MULTI == 0 {
		// A program attached without ALLOW_MULTI (by systemd or an older
		// runtime) is replaced in one step by attaching with the same flags.
		return attach(flags)
	}
	if err := attach(unix.BPF_F_ALLOW_MULTI); err != nil {
		return err
	}
	var errs []error
	for _, id := range old {
		if err := detachProgram(cgroupFd, id); err != nil {
			errs = append(errs, fmt.Errorf("detach old program %d: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

func detachProgram(cgroupFd int, id uint32) error {
	g := progGetFdAttr{progID: id}
	fd, err := bpf(unix.BPF_PROG_GET_FD_BY_ID, unsafe.Pointer(&g), unsafe.Sizeof(g))
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	defer unix.Close(int(fd))
	attr := progAttachAttr{
		targetFd:    uint32(cgroupFd),
		attachBpfFd: uint32(fd),
		attachType:  unix.BPF_CGROUP_DEVICE,
	}
	_, err = bpf(unix.BPF_PROG_DETACH, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}
