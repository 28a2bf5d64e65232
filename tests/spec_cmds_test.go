package tests

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// Script commands for the runtime-spec feature scripts (registered in
// TestScript):
//
//	readvar FILE VAR
//	    set $VAR to the content of FILE, without surrounding white space
//	waitchange FILE OLD
//	    poll until the trimmed content of FILE differs from OLD
//	waitmatch FILE REGEXP
//	    poll until FILE exists and matches REGEXP (multi-line mode)

// specCondition evaluates the conditions of the runtime-spec scripts:
//
//	[exists:PATH]      PATH exists on the host
//	[hugetlb]          a hugetlb cgroup controller is available (v1 or v2)
//	[timens]           the kernel supports time namespaces
func specCondition(cond string) (ok, handled bool) {
	switch {
	case strings.HasPrefix(cond, "exists:"):
		_, err := os.Stat(strings.TrimPrefix(cond, "exists:"))
		return err == nil, true
	case cond == "hugetlb":
		if _, err := os.Stat("/sys/fs/cgroup/hugetlb/cgroup.procs"); err == nil {
			return true, true
		}
		for _, p := range []string{"/sys/fs/cgroup/cgroup.controllers", "/sys/fs/cgroup/unified/cgroup.controllers"} {
			if b, err := os.ReadFile(p); err == nil && slices.Contains(strings.Fields(string(b)), "hugetlb") {
				return true, true
			}
		}
		return false, true
	case cond == "timens":
		_, err := os.Stat("/proc/self/ns/time")
		return err == nil, true
	}
	return false, false
}

func cmdReadvar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: readvar FILE VAR")
	}
	b, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	ts.Setenv(args[1], strings.TrimSpace(string(b)))
}

func cmdWaitchange(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitchange FILE OLD")
	}
	p := ts.MkAbs(args[0])
	end := time.Now().Add(deadline)
	for {
		b, err := os.ReadFile(p)
		ts.Check(err)
		if strings.TrimSpace(string(b)) != args[1] {
			return
		}
		if time.Now().After(end) {
			ts.Fatalf("%s still holds %q after %v", p, args[1], deadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func cmdWaitmatch(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitmatch FILE REGEXP")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	p := ts.MkAbs(args[0])
	end := time.Now().Add(deadline)
	for {
		if b, err := os.ReadFile(p); err == nil && re.Match(b) {
			return
		}
		if time.Now().After(end) {
			b, _ := os.ReadFile(p)
			ts.Fatalf("%s does not match %q after %v; it holds:\n%s", p, args[1], deadline, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
