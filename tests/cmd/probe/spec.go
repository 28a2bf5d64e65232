package main

// Commands for the runtime-spec feature tests (user and time namespaces,
// cgroup limits, seccomp, process fields). Each prints "key ..." lines like
// the rest of the probe.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// runSpec runs cmd if it is one of the commands of this file.
func runSpec(cmd string, args []string) bool {
	switch cmd {
	case "uname":
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			die("uname: %v", err)
		}
		fmt.Fprintf(out, "uname machine=%s\n", unix.ByteSliceToString(u.Machine[:]))
	case "personality":
		// personality [PERSONA]: without an argument report the current
		// persona; with one (decimal or 0x hex), call personality(PERSONA)
		// and report the result or the errno (for seccomp argument rules).
		if len(args) == 0 {
			r, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
			if e != 0 {
				fmt.Fprintf(out, "personality %s\n", errName(e))
				return true
			}
			fmt.Fprintf(out, "personality=%#x\n", r)
			return true
		}
		n, err := strconv.ParseUint(args[0], 0, 32)
		if err != nil {
			die("personality: %v", err)
		}
		_, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, uintptr(n), 0, 0)
		if e != 0 {
			fmt.Fprintf(out, "personality %s %s\n", args[0], errName(e))
			return true
		}
		fmt.Fprintf(out, "personality %s ok\n", args[0])
	case "ioprio":
		// ioprio_get(IOPRIO_WHO_PROCESS, 0)
		r, _, e := unix.RawSyscall(unix.SYS_IOPRIO_GET, 1, 0, 0)
		if e != 0 {
			fmt.Fprintf(out, "ioprio %s\n", errName(e))
			return true
		}
		fmt.Fprintf(out, "ioprio class=%d level=%d\n", r>>13, r&0x1fff)
	case "sched":
		pol, _, e := unix.RawSyscall(unix.SYS_SCHED_GETSCHEDULER, 0, 0, 0)
		if e != 0 {
			die("sched_getscheduler: %v", e)
		}
		names := map[uintptr]string{0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE", 6: "SCHED_DEADLINE"}
		var prio int32
		if _, _, e := unix.RawSyscall(unix.SYS_SCHED_GETPARAM, 0, uintptr(unsafe.Pointer(&prio)), 0); e != 0 {
			die("sched_getparam: %v", e)
		}
		nice, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
		if err != nil {
			die("getpriority: %v", err)
		}
		// The raw system call returns 20-nice.
		fmt.Fprintf(out, "sched policy=%s priority=%d nice=%d\n", names[pol&^0x40000000], prio, 20-nice)
	case "affinity":
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			die("sched_getaffinity: %v", err)
		}
		var cpus []string
		for i := 0; i < len(set)*64; i++ {
			if set.IsSet(i) {
				cpus = append(cpus, strconv.Itoa(i))
			}
		}
		fmt.Fprintf(out, "affinity=%s\n", strings.Join(cpus, ","))
	case "clocks":
		// Whole seconds of CLOCK_MONOTONIC and CLOCK_BOOTTIME, which a
		// time namespace offsets.
		var m, b unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &m); err != nil {
			die("clock_gettime: %v", err)
		}
		if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &b); err != nil {
			die("clock_gettime: %v", err)
		}
		fmt.Fprintf(out, "clocks monotonic=%d boottime=%d\n", m.Sec, b.Sec)
	case "alloc":
		// alloc MIB: allocate and touch MIB mebibytes (outside the Go
		// heap, so the GC cannot give it back), then report.
		need(cmd, args, 1)
		n, err := strconv.Atoi(args[0])
		if err != nil {
			die("alloc: %v", err)
		}
		fmt.Fprintf(out, "alloc %d start\n", n)
		out.Flush()
		for i := 0; i < n; i++ {
			b, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				fmt.Fprintf(out, "alloc %d %s\n", i, errName(err))
				return true
			}
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
		}
		fmt.Fprintf(out, "alloc %d ok\n", n)
	case "forks":
		// forks N: start N children (each a probe sleeping), report how
		// many could be started and the errno of the first failure, then
		// kill and reap them.
		need(cmd, args, 1)
		n, err := strconv.Atoi(args[0])
		if err != nil {
			die("forks: %v", err)
		}
		var pids []int
		var ferr error
		for i := 0; i < n; i++ {
			pid, err := syscall.ForkExec("/proc/self/exe", []string{"probe", "sleep"}, &syscall.ProcAttr{})
			if err != nil {
				ferr = err
				break
			}
			pids = append(pids, pid)
		}
		for _, pid := range pids {
			unix.Kill(pid, unix.SIGKILL)
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
		}
		if ferr != nil {
			fmt.Fprintf(out, "forks %d %s\n", len(pids), errName(ferr))
		} else {
			fmt.Fprintf(out, "forks %d ok\n", len(pids))
		}
	case "spin":
		// spin [FILE]: burn CPU forever (FILE is written once running).
		if len(args) > 0 {
			ready(args[0])
		}
		out.Flush()
		x := 0
		for {
			x++
		}
	case "ps":
		// ps: "proc PID PPID COMM" for every process in /proc.
		ents, err := os.ReadDir("/proc")
		if err != nil {
			die("ps: %v", err)
		}
		var pids []int
		for _, e := range ents {
			if n, err := strconv.Atoi(e.Name()); err == nil {
				pids = append(pids, n)
			}
		}
		sort.Ints(pids)
		for _, pid := range pids {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if err != nil {
				continue
			}
			s := string(b)
			i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
			if i < 0 || j < i {
				continue
			}
			f := strings.Fields(s[j+1:])
			ppid := "?"
			if len(f) > 1 {
				ppid = f[1]
			}
			fmt.Fprintf(out, "proc %d %s %s\n", pid, ppid, s[i+1:j])
		}
	case "open":
		// open PATH [r|w]: open (read-only by default) and close, report ok
		// or the errno; never reads, so it is safe on device nodes.
		need(cmd, args, 1)
		flag := unix.O_RDONLY
		if len(args) > 1 && args[1] == "w" {
			flag = unix.O_WRONLY
		}
		fd, err := unix.Open(args[0], flag|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			fmt.Fprintf(out, "open %s %s\n", args[0], errName(err))
			return true
		}
		unix.Close(fd)
		fmt.Fprintf(out, "open %s ok\n", args[0])
	case "uidmap":
		for _, f := range []string{"uid_map", "gid_map", "setgroups"} {
			b, err := os.ReadFile("/proc/self/" + f)
			if err != nil {
				fmt.Fprintf(out, "%s %s\n", f, errName(err))
				continue
			}
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				fmt.Fprintf(out, "%s %s\n", f, strings.Join(strings.Fields(l), " "))
			}
		}
	case "setgroups":
		// setgroups GID...: try to set the supplementary groups.
		gs := make([]int, 0, len(args))
		for _, a := range args {
			g, err := strconv.Atoi(a)
			if err != nil {
				die("setgroups: %v", err)
			}
			gs = append(gs, g)
		}
		if err := unix.Setgroups(gs); err != nil {
			fmt.Fprintf(out, "setgroups %s\n", errName(err))
			return true
		}
		fmt.Fprintln(out, "setgroups ok")
	case "hook":
		// hook DIR NAME: act as an OCI hook: copy stdin (the state JSON)
		// to DIR/NAME.json and record the argv, environment, mount and pid
		// namespaces and the executable of the state's pid ("init-exe")
		// in DIR/NAME.info, then DIR/NAME.done.
		need(cmd, args, 2)
		hook(args[0], args[1])
	default:
		return false
	}
	return true
}

func hook(dir, name string) {
	state, err := io.ReadAll(os.Stdin)
	if err != nil {
		die("hook: read stdin: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), state, 0o644); err != nil {
		die("hook: %v", err)
	}
	var b strings.Builder
	for i, a := range os.Args {
		fmt.Fprintf(&b, "arg %d %s\n", i, a)
	}
	for _, e := range os.Environ() {
		fmt.Fprintf(&b, "env %s\n", e)
	}
	for _, ns := range []string{"mnt", "pid", "net"} {
		t, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			t = errName(err)
		} else if i := strings.IndexByte(t, '['); i >= 0 {
			t = strings.TrimSuffix(t[i+1:], "]")
		}
		fmt.Fprintf(&b, "ns %s %s\n", ns, t)
	}
	// What the container's init is running as the hook runs: the runtime,
	// or the user process once executed.
	var st struct {
		Pid int `json:"pid"`
	}
	if json.Unmarshal(state, &st) == nil && st.Pid > 0 {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.Pid))
		if err != nil {
			exe = errName(err)
		}
		fmt.Fprintf(&b, "init-exe %s\n", exe)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".info"), []byte(b.String()), 0o644); err != nil {
		die("hook: %v", err)
	}
	ready(filepath.Join(dir, name+".done"))
}
