package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// label names a position in a program under construction. Conditional jumps
// in classic BPF reach at most 255 instructions ahead, so the compiler emits
// symbolic jumps and the assembler resolves them, adding trampolines where a
// target is too far.
type label int

// next is the label of the instruction right after a jump (offset 0).
const next label = -1

type insn struct {
	code   uint16
	k      uint32
	jt, jf label // conditional jumps; ja uses jt
	mark   label // >= 0: this entry is a label, not an instruction
	farT   bool  // jt needs a ja trampoline
	farF   bool  // jf needs a ja trampoline
}

func (i *insn) isLabel() bool { return i.mark >= 0 }
func (i *insn) isCond() bool {
	return i.code&0x07 == unix.BPF_JMP && i.code&0xf0 != unix.BPF_JA
}
func (i *insn) isJa() bool { return i.code == unix.BPF_JMP|unix.BPF_JA }

// size is the number of instructions i expands to.
func (i *insn) size() int {
	switch {
	case i.isLabel():
		return 0
	case i.isCond():
		n := 1
		if i.farT {
			n++
		}
		if i.farF {
			n++
		}
		return n
	}
	return 1
}

// assembler collects instructions with symbolic, forward-only jumps.
type assembler struct {
	prog   []insn
	labels int
}

func (a *assembler) newLabel() label {
	a.labels++
	return label(a.labels - 1)
}

func (a *assembler) bind(l label) { a.prog = append(a.prog, insn{mark: l}) }

func (a *assembler) stmt(code uint16, k uint32) {
	a.prog = append(a.prog, insn{code: code, k: k, jt: next, jf: next, mark: -1})
}

// loadAbs loads the 32-bit word at off in struct seccomp_data into A.
func (a *assembler) loadAbs(off uint32) { a.stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }

func (a *assembler) ret(k uint32) { a.stmt(unix.BPF_RET|unix.BPF_K, k) }

func (a *assembler) and(k uint32) { a.stmt(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, k) }

// jump emits a conditional jump (unix.BPF_JEQ, BPF_JGT, BPF_JGE or BPF_JSET
// against the constant k).
func (a *assembler) jump(op uint16, k uint32, jt, jf label) {
	a.prog = append(a.prog, insn{code: unix.BPF_JMP | op | unix.BPF_K, k: k, jt: jt, jf: jf, mark: -1})
}

// assemble resolves labels. A conditional jump whose target is more than
// 255 instructions ahead is rewritten to hop to a `ja` placed right after it;
// each rewrite moves later code, so layout repeats until no new far jump
// appears (it only grows, so it terminates).
func (a *assembler) assemble() ([]unix.SockFilter, error) {
	pos := make([]int, a.labels)
	for {
		n := 0
		for i := range a.prog {
			if a.prog[i].isLabel() {
				pos[a.prog[i].mark] = n
			}
			n += a.prog[i].size()
		}
		if n > maxInsns {
			return nil, fmt.Errorf("%w: %d instructions, the kernel allows %d", ErrProgramTooLong, n, maxInsns)
		}
		grown := false
		at := 0
		for i := range a.prog {
			in := &a.prog[i]
			if in.isCond() {
				// Jump offsets count from the instruction after the jump.
				if !in.farT && in.jt != next && pos[in.jt]-(at+1) > 255 {
					in.farT, grown = true, true
				}
				if !in.farF && in.jf != next && pos[in.jf]-(at+1) > 255 {
					in.farF, grown = true, true
				}
			}
			at += in.size()
		}
		if !grown {
			return a.emit(pos)
		}
	}
}

func (a *assembler) emit(pos []int) ([]unix.SockFilter, error) {
	var out []unix.SockFilter
	target := func(l label, from int) (int, error) {
		if l == next {
			return 0, nil
		}
		d := pos[l] - from
		if d < 0 {
			return 0, fmt.Errorf("assemble seccomp program: backward jump to label %d", l)
		}
		return d, nil
	}
	for i := range a.prog {
		in := &a.prog[i]
		switch {
		case in.isLabel():
			continue
		case in.isJa():
			d, err := target(in.jt, len(out)+1)
			if err != nil {
				return nil, err
			}
			out = append(out, unix.SockFilter{Code: in.code, K: uint32(d)})
		case in.isCond():
			after := len(out) + in.size()
			dt, err := target(in.jt, after)
			if err != nil {
				return nil, err
			}
			df, err := target(in.jf, after)
			if err != nil {
				return nil, err
			}
			// Offsets count from the instruction after the jump, so a
			// near target also skips the trampolines.
			tramp := in.size() - 1
			jt, jf := dt+tramp, df+tramp
			if in.farT {
				jt = 0
			}
			if in.farF {
				jf = 0
				if in.farT {
					jf = 1
				}
			}
			if jt > 255 || jf > 255 {
				return nil, fmt.Errorf("assemble seccomp program: jump of %d/%d instructions", jt, jf)
			}
			out = append(out, unix.SockFilter{Code: in.code, Jt: uint8(jt), Jf: uint8(jf), K: in.k})
			base := len(out)
			if in.farT {
				out = append(out, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(pos[in.jt] - base - 1)})
			}
			if in.farF {
				out = append(out, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA, K: uint32(pos[in.jf] - len(out) - 1)})
			}
		default:
			out = append(out, unix.SockFilter{Code: in.code, K: in.k})
		}
	}
	return out, nil
}
