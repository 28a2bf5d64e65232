package cgroups

import (
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Access bits, numbered as the kernel's BPF_DEVCG_ACC_* so the same mask
// serves the v2 program.
const (
	accMknod = 1
	accRead  = 2
	accWrite = 4
	accAll   = accMknod | accRead | accWrite
)

// devRule is a normalised spec device rule: type 'a', 'b' or 'c'; -1 for a
// wildcard major or minor.
type devRule struct {
	typ    byte
	major  int64
	minor  int64
	access uint32
	allow  bool
}

func (r devRule) isAll() bool { return r.typ == 'a' }

func normaliseDevice(d specs.LinuxDeviceCgroup) (devRule, error) {
	r := devRule{typ: 'a', major: -1, minor: -1, access: accAll, allow: d.Allow}
	switch d.Type {
	case "", "a":
	case "b", "c":
		r.typ = d.Type[0]
	default:
		return r, fmt.Errorf("invalid device rule type %q", d.Type)
	}
	if d.Major != nil {
		r.major = *d.Major
	}
	if d.Minor != nil {
		r.minor = *d.Minor
	}
	for _, n := range []int64{r.major, r.minor} {
		// The v2 program compares against a signed 32-bit immediate.
		if n < -1 || n > 1<<31-1 {
			return r, fmt.Errorf("invalid device number %d in device rule", n)
		}
	}
	if d.Access != "" {
		r.access = 0
		for _, c := range d.Access {
			switch c {
			case 'r':
				r.access |= accRead
			case 'w':
				r.access |= accWrite
			case 'm':
				r.access |= accMknod
			default:
				return r, fmt.Errorf("invalid device rule access %q", d.Access)
			}
		}
	}
	return r, nil
}

// v1String renders a rule for devices.allow / devices.deny.
func (r devRule) v1String() string {
	if r.isAll() {
		// The kernel reads "a" as "everything" and ignores what follows.
		return "a"
	}
	num := func(n int64) string {
		if n < 0 {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	var acc strings.Builder
	if r.access&accRead != 0 {
		acc.WriteByte('r')
	}
	if r.access&accWrite != 0 {
		acc.WriteByte('w')
	}
	if r.access&accMknod != 0 {
		acc.WriteByte('m')
	}
	return fmt.Sprintf("%c %s:%s %s", r.typ, num(r.major), num(r.minor), acc.String())
}

func normaliseDevices(devs []specs.LinuxDeviceCgroup) ([]devRule, error) {
	rules := make([]devRule, 0, len(devs))
	for _, d := range devs {
		r, err := normaliseDevice(d)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// v1DeviceWrites lists the (file, value) writes that apply rules in order.
// A rule list opening with deny-all starts with "a" to devices.deny, which
// also drops every exception inherited from before (update, or a reused
// cgroup).
func v1DeviceWrites(rules []devRule) [][2]string {
	var out [][2]string
	for _, r := range rules {
		f := "devices.deny"
		if r.allow {
			f = "devices.allow"
		}
		out = append(out, [2]string{f, r.v1String()})
	}
	return out
}

func setDevicesV1(dir string, devs []specs.LinuxDeviceCgroup) error {
	rules, err := normaliseDevices(devs)
	if err != nil {
		return err
	}
	for _, w := range v1DeviceWrites(rules) {
		if err := writeFile(dir, w[0], w[1]); err != nil {
			return err
		}
	}
	return nil
}

// devState emulates the v1 devices controller: a default verdict plus
// exceptions of the opposite verdict. The v2 program is compiled from this
// final state, so a rule list means the same on both versions.
type devState struct {
	defaultAllow bool
	exceptions   []devRule
}

func emulateDevices(rules []devRule) devState {
	// A fresh v1 cgroup under the root allows everything.
	st := devState{defaultAllow: true}
	for _, r := range rules {
		if r.isAll() {
			st = devState{defaultAllow: r.allow}
			continue
		}
		if r.allow == st.defaultAllow {
			// Same verdict as the default: it narrows an exact exception, as
			// the kernel's dev_exception_rm does.
			kept := st.exceptions[:0]
			for _, e := range st.exceptions {
				if e.typ == r.typ && e.major == r.major && e.minor == r.minor {
					e.access &^= r.access
					if e.access == 0 {
						continue
					}
				}
				kept = append(kept, e)
			}
			st.exceptions = kept
			continue
		}
		merged := false
		for i, e := range st.exceptions {
			if e.typ == r.typ && e.major == r.major && e.minor == r.minor {
				st.exceptions[i].access |= r.access
				merged = true
				break
			}
		}
		if !merged {
			st.exceptions = append(st.exceptions, r)
		}
	}
	return st
}
