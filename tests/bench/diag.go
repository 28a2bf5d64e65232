package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// diagnose prints, for `run /bin/true` of each runtime on the same bundle,
// the syscall profile from `strace -f -c` and perf stat's software counters
// (task-clock, page faults, context switches) over repeated runs. The
// figures under strace are for counting, not timing.
func (b *bench) diagnose(repeat int) error {
	for _, tool := range []string{"strace", "perf"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not installed (Debian packages strace, linux-perf)", tool)
		}
	}
	b.printf("### Diagnosis: `run /bin/true`, syscalls (strace -f -c) and perf stat (%d runs)\n\n", repeat)
	t := &table{head: []string{"runtime", "syscalls", "failed", "most frequent", "task-clock", "page faults", "context switches"}}
	for _, r := range b.rts {
		out := filepath.Join(b.work, "strace-"+r.name)
		cmd := exec.Command("strace", append([]string{"-f", "-qq", "-c", "-o", out}, r.argv("run", "--bundle", b.bundleNet, r.id())...)...)
		cmd.Env = r.env
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("strace %s: %v: %s", r.name, err, msg)
		}
		calls, errs, top := parseStraceC(out)
		// perf stat runs the same command repeatedly: the container ID is
		// reused, which works because run deletes the container.
		pcmd := exec.Command("perf", append([]string{"stat", "-x,", "-r", strconv.Itoa(repeat),
			"-e", "task-clock,page-faults,context-switches"}, r.argv("run", "--bundle", b.bundleNet, r.id())...)...)
		pcmd.Env = r.env
		pout, err := pcmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("perf stat %s: %v: %s", r.name, err, pout)
		}
		ev := parsePerfStat(string(pout))
		t.row(r.name, strconv.Itoa(calls), strconv.Itoa(errs), top,
			fmt.Sprintf("%.2f ms", ev["task-clock"]), fmt.Sprintf("%.0f", ev["page-faults"]), fmt.Sprintf("%.0f", ev["context-switches"]))
	}
	b.printf("%s\n", t)
	return nil
}

func parseStraceC(path string) (calls, errs int, top string) {
	bs, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, "?"
	}
	type sc struct {
		name  string
		calls int
	}
	var all []sc
	for _, l := range strings.Split(string(bs), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || strings.HasPrefix(l, "%") || strings.HasPrefix(l, "-") {
			continue
		}
		name := f[len(f)-1]
		n, err := strconv.Atoi(f[3])
		if err != nil {
			continue
		}
		e := 0
		if len(f) == 6 {
			e, _ = strconv.Atoi(f[4])
		}
		if name == "total" {
			calls, errs = n, e
			continue
		}
		all = append(all, sc{name, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].calls > all[j].calls })
	var parts []string
	for i := 0; i < len(all) && i < 5; i++ {
		parts = append(parts, fmt.Sprintf("%s %d", all[i].name, all[i].calls))
	}
	return calls, errs, strings.Join(parts, ", ")
}

// parsePerfStat reads perf stat -x, output: value,unit,event,...
func parsePerfStat(out string) map[string]float64 {
	m := map[string]float64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, ",")
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		m[strings.TrimSuffix(f[2], ":u")] = v
	}
	return m
}
