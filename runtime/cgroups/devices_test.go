package cgroups

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func dev(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
	d := specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Access: access}
	if major != -2 {
		d.Major = i64(major)
	}
	if minor != -2 {
		d.Minor = i64(minor)
	}
	return d
}

// noNum leaves a major or minor unset in dev.
const noNum = -2

// typicalDevices is the usual OCI list: deny all, then the standard devices.
var typicalDevices = []specs.LinuxDeviceCgroup{
	{Allow: false, Access: "rwm"},
	dev(true, "c", 1, 3, "rwm"),       // /dev/null
	dev(true, "c", 1, 5, "rwm"),       // /dev/zero
	dev(true, "c", 5, 0, "rwm"),       // /dev/tty
	dev(true, "c", 136, -1, "rwm"),    // /dev/pts/*
	dev(true, "c", 10, 200, "rw"),     // /dev/net/tun
	dev(true, "c", noNum, noNum, "m"), // mknod of any char device
	dev(true, "b", noNum, noNum, "m"), // mknod of any block device
}

func TestV1DeviceWrites(t *testing.T) {
	rules, err := normaliseDevices(typicalDevices)
	if err != nil {
		t.Fatal(err)
	}
	got := v1DeviceWrites(rules)
	want := [][2]string{
		{"devices.deny", "a"},
		{"devices.allow", "c 1:3 rwm"},
		{"devices.allow", "c 1:5 rwm"},
		{"devices.allow", "c 5:0 rwm"},
		{"devices.allow", "c 136:* rwm"},
		{"devices.allow", "c 10:200 rw"},
		{"devices.allow", "c *:* m"},
		{"devices.allow", "b *:* m"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("writes:\n got  %v\n want %v", got, want)
	}
}

func TestNormaliseDeviceErrors(t *testing.T) {
	for _, d := range []specs.LinuxDeviceCgroup{
		{Type: "x"},
		{Type: "c", Access: "rwx"},
		dev(true, "c", 1<<32, 0, "r"),
		dev(true, "c", 1, -5, "r"),
	} {
		if _, err := normaliseDevice(d); err == nil {
			t.Errorf("normaliseDevice(%+v): want an error", d)
		}
	}
}

// runDeviceProgram interprets the few opcodes deviceProgram emits, so the
// generated program can be checked without loading it.
func runDeviceProgram(t *testing.T, prog []bpfInsn, typ, access, major, minor uint32) int64 {
	t.Helper()
	ctx := []uint32{access<<16 | typ, major, minor}
	var reg [11]uint64
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		dst, src := in.regs&0xf, in.regs>>4
		switch in.code {
		case opLdxMemW:
			if src != rCtx || in.off%4 != 0 || int(in.off/4) >= len(ctx) {
				t.Fatalf("pc %d: bad context load %+v", pc, in)
			}
			reg[dst] = uint64(ctx[in.off/4])
		case opMov32Reg:
			reg[dst] = uint64(uint32(reg[src]))
		case opAnd32Imm:
			reg[dst] = uint64(uint32(reg[dst]) & uint32(in.imm))
		case opRsh32Imm:
			reg[dst] = uint64(uint32(reg[dst]) >> uint32(in.imm))
		case opMov64Imm:
			reg[dst] = uint64(int64(in.imm))
		case opJeqImm, opJneImm:
			eq := reg[dst] == uint64(int64(in.imm))
			if eq == (in.code == opJeqImm) {
				pc += int(in.off)
			}
		case opExit:
			return int64(reg[0])
		default:
			t.Fatalf("pc %d: unexpected opcode %#x", pc, in.code)
		}
		if pc+1 > len(prog) {
			t.Fatalf("jump past the end at pc %d", pc)
		}
	}
	t.Fatal("program fell off the end")
	return -1
}

func TestDeviceProgram(t *testing.T) {
	const (
		b = devBlock
		c = devChar
		r = accRead
		w = accWrite
		m = accMknod
	)
	type probe struct {
		typ, access, major, minor uint32
		allow                     bool
	}
	for _, tc := range []struct {
		name   string
		rules  []specs.LinuxDeviceCgroup
		probes []probe
	}{
		{
			name:  "deny all then allow list",
			rules: typicalDevices,
			probes: []probe{
				{c, r | w, 1, 3, true},
				{c, r, 1, 5, true},
				{c, r, 1, 7, false},        // /dev/full not listed
				{c, w, 136, 42, true},      // pts wildcard minor
				{c, r, 10, 200, true},      // tun rw
				{c, m, 10, 200, true},      // mknod via the c *:* m rule
				{c, r | m, 10, 200, false}, // no single rule grants both
				{b, r, 8, 0, false},
				{b, m, 8, 0, true},
			},
		},
		{
			name:  "allow all then deny some",
			rules: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}, dev(false, "b", 8, noNum, "w"), dev(false, "c", 1, 1, "rwm")},
			probes: []probe{
				{b, r, 8, 0, true},
				{b, w, 8, 16, false},
				{b, r | w, 8, 0, false}, // any denied bit denies
				{c, r, 1, 1, false},     // /dev/mem
				{c, r, 1, 3, true},
			},
		},
		{
			name:   "empty list allows everything",
			rules:  []specs.LinuxDeviceCgroup{},
			probes: []probe{{c, r | w | m, 4, 4, true}, {b, r, 8, 0, true}},
		},
		{
			name:   "later deny-all wipes earlier allows",
			rules:  []specs.LinuxDeviceCgroup{dev(true, "c", 1, 3, "rwm"), {Allow: false}},
			probes: []probe{{c, r, 1, 3, false}},
		},
		{
			name: "deny after allow narrows the exception",
			rules: []specs.LinuxDeviceCgroup{
				{Allow: false, Access: "rwm"},
				dev(true, "c", 1, 3, "rwm"),
				dev(false, "c", 1, 3, "w"),
			},
			probes: []probe{{c, r, 1, 3, true}, {c, w, 1, 3, false}, {c, m, 1, 3, true}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog, err := deviceProgram(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.probes {
				got := runDeviceProgram(t, prog, p.typ, p.access, p.major, p.minor) == 1
				if got != p.allow {
					t.Errorf("type %d access %d %d:%d: allow=%v, want %v", p.typ, p.access, p.major, p.minor, got, p.allow)
				}
			}
		})
	}
}

func TestDeviceProgramShape(t *testing.T) {
	prog, err := deviceProgram(typicalDevices)
	if err != nil {
		t.Fatal(err)
	}
	// Every jump lands inside the program, and the program ends in exit.
	for i, in := range prog {
		if in.code == opJeqImm || in.code == opJneImm {
			if tgt := i + 1 + int(in.off); in.off <= 0 || tgt >= len(prog) {
				t.Errorf("insn %d jumps to %d of %d", i, tgt, len(prog))
			}
		}
	}
	if last := prog[len(prog)-1]; last.code != opExit {
		t.Errorf("last instruction %+v is not exit", last)
	}
	var b strings.Builder
	for _, in := range prog {
		fmt.Fprintf(&b, "%02x%02x%04x%08x ", in.code, in.regs, uint16(in.off), uint32(in.imm))
	}
	t.Logf("program (%d insns): %s", len(prog), b.String())
}
