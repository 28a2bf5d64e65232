package initproc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Personality domains (linux/personality.h).
const (
	perLinux   = 0x0000
	perLinux32 = 0x0008
)

func setPersonality(p *specs.LinuxPersonality) error {
	if p == nil {
		return nil
	}
	var v uintptr
	switch p.Domain {
	case specs.PerLinux:
		v = perLinux
	case specs.PerLinux32:
		v = perLinux32
	default:
		return fmt.Errorf("personality: unknown domain %q", p.Domain)
	}
	if len(p.Flags) > 0 {
		return errors.New("personality: flags are not supported")
	}
	if _, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, v, 0, 0); e != 0 {
		return fmt.Errorf("set personality %s: %w", p.Domain, e)
	}
	return nil
}

var ioprioClasses = map[specs.IOPriorityClass]int{
	specs.IOPRIO_CLASS_RT:   1,
	specs.IOPRIO_CLASS_BE:   2,
	specs.IOPRIO_CLASS_IDLE: 3,
}

func setIOPriority(p *specs.LinuxIOPriority) error {
	if p == nil {
		return nil
	}
	class, ok := ioprioClasses[p.Class]
	if !ok {
		return fmt.Errorf("ioPriority: unknown class %q", p.Class)
	}
	if p.Priority < 0 || p.Priority > 7 {
		return fmt.Errorf("ioPriority: priority %d out of range 0-7", p.Priority)
	}
	const whoProcess = 1
	prio := class<<13 | p.Priority
	if _, _, e := unix.RawSyscall(unix.SYS_IOPRIO_SET, whoProcess, 0, uintptr(prio)); e != 0 {
		return fmt.Errorf("set io priority: %w", e)
	}
	return nil
}

var schedPolicies = map[specs.LinuxSchedulerPolicy]uint32{
	specs.SchedOther:    0,
	specs.SchedFIFO:     1,
	specs.SchedRR:       2,
	specs.SchedBatch:    3,
	specs.SchedIdle:     5,
	specs.SchedDeadline: 6,
}

var schedFlags = map[specs.LinuxSchedulerFlag]uint64{
	specs.SchedFlagResetOnFork:  0x01,
	specs.SchedFlagReclaim:      0x02,
	specs.SchedFlagDLOverrun:    0x04,
	specs.SchedFlagKeepPolicy:   0x08,
	specs.SchedFlagKeepParams:   0x10,
	specs.SchedFlagUtilClampMin: 0x20,
	specs.SchedFlagUtilClampMax: 0x40,
}

func setScheduler(s *specs.Scheduler) error {
	if s == nil {
		return nil
	}
	pol, ok := schedPolicies[s.Policy]
	if !ok {
		return fmt.Errorf("scheduler: unknown policy %q", s.Policy)
	}
	attr := &unix.SchedAttr{Policy: pol, Nice: s.Nice, Priority: uint32(s.Priority), Runtime: s.Runtime, Deadline: s.Deadline, Period: s.Period}
	for _, f := range s.Flags {
		v, ok := schedFlags[f]
		if !ok {
			return fmt.Errorf("scheduler: unknown flag %q", f)
		}
		attr.Flags |= v
	}
	if err := unix.SchedSetAttr(0, attr, 0); err != nil {
		return fmt.Errorf("set scheduler %s: %w", s.Policy, err)
	}
	return nil
}

// setAffinity applies a cpu list such as "0-2,7".
func setAffinity(list string) error {
	if list == "" {
		return nil
	}
	var set unix.CPUSet
	for _, part := range strings.Split(list, ",") {
		lo, hi, rng := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return fmt.Errorf("execCPUAffinity: bad cpu list %q", list)
		}
		b := a
		if rng {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return fmt.Errorf("execCPUAffinity: bad cpu list %q", list)
			}
		}
		for i := a; i <= b; i++ {
			set.Set(i)
		}
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("set cpu affinity %s: %w", list, err)
	}
	return nil
}

// writeTimeOffsets sets the clock offsets of a new time namespace; the
// kernel accepts them only before a process enters it, i.e. before exec.
func writeTimeOffsets(off map[string]specs.LinuxTimeOffset) error {
	if len(off) == 0 {
		return nil
	}
	var b strings.Builder
	for clock, o := range off {
		if clock != "monotonic" && clock != "boottime" {
			return fmt.Errorf("timeOffsets: unknown clock %q", clock)
		}
		fmt.Fprintf(&b, "%s %d %d\n", clock, o.Secs, o.Nanosecs)
	}
	if err := os.WriteFile("/proc/self/timens_offsets", []byte(b.String()), 0); err != nil {
		return fmt.Errorf("write time namespace offsets: %w", err)
	}
	return nil
}

// processExtras applies the scheduling-related process fields that must be
// set from inside, before exec.
func processExtras(p *specs.Process) error {
	if err := setScheduler(p.Scheduler); err != nil {
		return err
	}
	if err := setIOPriority(p.IOPriority); err != nil {
		return err
	}
	if p.ExecCPUAffinity != nil {
		if err := setAffinity(p.ExecCPUAffinity.Initial); err != nil {
			return err
		}
	}
	return nil
}
