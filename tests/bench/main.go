// Command bench compares cubo-runc with runc and crun from Debian on the
// same busybox bundle, alternating the runtimes run by run, and prints
// medians and the ratios cubo-runc/runc and cubo-runc/crun as markdown
// (the body of docs/benchmarks.md). With a bin/cubo that has the verbs, it
// also compares the manager with podman and skopeo; otherwise it says what
// it skipped. Run it as root from the repository root:
//
//	go run ./tests/bench [-n 30] [-batches 5] [-containers 200]
//	go run ./tests/bench -only pull -n 30   # one manager figure alone
//
// Times are wall clock from fork to reaping, and CPU is user+sys from
// wait4's rusage (microseconds) summed over the whole process tree: the
// harness is a child subreaper, so inits and helpers a runtime leaves behind
// are reaped and counted here. The machine is shared and noisy; nothing
// here asserts a time.
package main

import (
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type rt struct {
	name    string
	path    string
	env     []string // nil: the harness's environment
	variant bool     // an extra cubo-runc build or setting, compared with cubo-runc
	root    string   // private --root state dir
	seq     int
}

func (r *rt) id() string {
	r.seq++
	return fmt.Sprintf("cubobench-%d-%s-%d", os.Getpid(), r.name, r.seq)
}

func (r *rt) argv(args ...string) []string {
	return append([]string{r.path, "--root", r.root}, args...)
}

type bench struct {
	n, batches, containers int
	par                    []int
	rts                    []*rt
	work                   string
	bundleNet, bundleNoNet string
	helper                 *cgroupHelper
	hiddenV2               bool
	cleanupOnce            sync.Once
	out                    strings.Builder

	// figures[figure][runtime]
	figs map[string]map[string]series

	// only limits the manager half to these figures (pull, run, bridge,
	// build); empty means all.
	only map[string]bool
}

// want reports whether the manager figure name is to be measured.
func (b *bench) want(name string) bool { return len(b.only) == 0 || b.only[name] }

func main() {
	var (
		n          = flag.Int("n", 50, "alternated runs per figure")
		batches    = flag.Int("batches", 30, "alternated batches per throughput figure")
		containers = flag.Int("containers", 200, "containers per throughput batch")
		par        = flag.String("parallel", "2,8", "parallelism levels for the throughput figure")
		cuboRunc   = flag.String("cubo-runc", "bin/cubo-runc", "cubo-runc binary")
		cubo       = flag.String("cubo", "bin/cubo", "cubo binary (the manager half runs only when it has the verbs)")
		runcPath   = flag.String("runc", "/usr/sbin/runc", "runc binary")
		crunPath   = flag.String("crun", "/usr/bin/crun", "crun binary")
		install    = flag.Bool("install", true, "apt-get install missing Debian packages (runc, crun, hyperfine; podman, skopeo, docker-registry for the manager half)")
		noManager  = flag.Bool("no-manager", false, "skip the manager half")
		noRuntime  = flag.Bool("no-runtime", false, "skip the runtime half")
		only       = flag.String("only", "", "manager figures to measure, comma-separated: pull, run (--network none, 5 vs 500 MB), bridge, build; skips the runtime half (default all)")
		outFile    = flag.String("o", "", "also write the markdown report to this file")
		hybrid     = flag.String("hybrid", "private", "on a hybrid cgroup host, how to let crun 1.8.1 run: private (hide cgroup2 in a private mount namespace) or rebind (move its controllers to a private v1 hierarchy)")
		diag       = flag.Int("diag", 0, "instead of the benchmark, print strace -f -c syscall counts and perf stat over N runs of `run /bin/true` per runtime")
		variants   variantFlags
	)
	flag.Var(&variants, "variant", "extra runtime to compare with cubo-runc, NAME=PATH[,ENV=VALUE...] (repeatable), e.g. gmp1=bin/cubo-runc,GOMAXPROCS=1")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal(errors.New("run as root: the runtimes need it"))
	}
	hiddenV2 := false
	if ctrls := hybridControllers(); len(ctrls) > 0 || os.Getenv(nsEnv) == "1" {
		switch *hybrid {
		case "private":
			ok, err := enterPrivateNS() // re-executes the harness; returns inside
			if err != nil {
				fatal(err)
			}
			hiddenV2 = ok
		case "rebind":
		default:
			fatal(fmt.Errorf("bad -hybrid %q: private or rebind", *hybrid))
		}
	}
	if *install {
		installDebs(map[string]string{*runcPath: "runc", *crunPath: "crun", "/usr/bin/hyperfine": "hyperfine"})
	}
	b := &bench{n: *n, batches: *batches, containers: *containers, figs: map[string]map[string]series{}, hiddenV2: hiddenV2}
	if *only != "" {
		b.only = map[string]bool{}
		for _, f := range strings.Split(*only, ",") {
			if !slices.Contains([]string{"pull", "run", "bridge", "build"}, f) {
				fatal(fmt.Errorf("-only: unknown figure %q (pull, run, bridge, build)", f))
			}
			b.only[f] = true
		}
	}
	for _, p := range strings.Split(*par, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 1 {
			fatal(fmt.Errorf("bad -parallel %q", *par))
		}
		b.par = append(b.par, v)
	}
	abs, err := filepath.Abs(*cuboRunc)
	if err != nil {
		fatal(err)
	}
	if err := becomeSubreaper(); err != nil {
		fatal(err)
	}
	b.work, err = os.MkdirTemp("", "cubo-bench-")
	if err != nil {
		fatal(err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: cleaning up\n", s)
		b.cleanup()
		os.Exit(130)
	}()
	defer b.cleanup()

	for _, c := range []struct{ name, path string }{{"cubo-runc", abs}, {"runc", *runcPath}, {"crun", *crunPath}} {
		if _, err := os.Stat(c.path); err != nil {
			if c.name == "cubo-runc" {
				fatal(fmt.Errorf("%s: %w (run make build)", c.path, err))
			}
			fmt.Fprintf(os.Stderr, "bench: %s not found at %s; comparing without it\n", c.name, c.path)
			continue
		}
		r := &rt{name: c.name, path: c.path, root: filepath.Join(b.work, "state", c.name)}
		if err := os.MkdirAll(r.root, 0o700); err != nil {
			fatal(err)
		}
		b.rts = append(b.rts, r)
	}

	for _, v := range variants {
		v.root = filepath.Join(b.work, "state", v.name)
		if err := os.MkdirAll(v.root, 0o700); err != nil {
			fatal(err)
		}
		b.rts = append(b.rts, v)
	}

	b.header(*cuboRunc, *cubo)
	if err := b.setup(*runcPath); err != nil {
		b.cleanup()
		fatal(err)
	}
	if *diag > 0 {
		if err := b.diagnose(*diag); err != nil {
			b.cleanup()
			fatal(err)
		}
		b.cleanup()
		fmt.Print(b.out.String())
		return
	}
	if !*noRuntime && *only == "" {
		if err := b.runtimeHalf(); err != nil {
			b.cleanup()
			fatal(err)
		}
	}
	b.helper.stop()
	b.helper = nil
	if !*noManager {
		b.managerHalf(*cubo, abs, *install)
	}
	fmt.Print(b.out.String())
	if *outFile != "" {
		if err := os.WriteFile(*outFile, []byte(b.out.String()), 0o644); err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func (b *bench) printf(format string, a ...any) {
	fmt.Fprintf(&b.out, format, a...)
}

func (b *bench) progress(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format, a...)
}

//go:embed launch/launch.c
var launchC []byte

// buildLauncher compiles the measuring shim (see launch/launch.c).
func (b *bench) buildLauncher() {
	src := filepath.Join(b.work, "launch.c")
	bin := filepath.Join(b.work, "launch")
	if err := os.WriteFile(src, launchC, 0o644); err == nil {
		for _, static := range []bool{true, false} {
			args := []string{"-O2", "-o", bin, src}
			if static {
				args = append([]string{"-static"}, args...)
			}
			if exec.Command("cc", args...).Run() == nil {
				launcher = bin
				return
			}
		}
	}
	b.printf("No C compiler: the launch shim is missing, so peak RSS figures include the harness's own RSS.\n\n")
}

func (b *bench) setup(runc string) error {
	b.buildLauncher()
	rootfs := filepath.Join(b.work, "rootfs")
	src, err := makeRootfs(rootfs)
	if err != nil {
		return err
	}
	if _, err := os.Stat(runc); err != nil {
		runc = b.rts[0].path // any runtime's `spec` will do
	}
	b.bundleNet = filepath.Join(b.work, "bundle-net")
	b.bundleNoNet = filepath.Join(b.work, "bundle-nonet")
	if err := makeBundle(b.bundleNet, rootfs, runc, true, []string{"/bin/true"}); err != nil {
		return err
	}
	if err := makeBundle(b.bundleNoNet, rootfs, runc, false, []string{"/bin/true"}); err != nil {
		return err
	}
	b.printf("Bundle: rootfs from %s, config.json from `%s spec` with ociVersion 1.0.2, "+
		"args [/bin/true], terminal false, read-only root; \"net\" keeps the network namespace, "+
		"\"no net\" drops it. State dirs: a private `--root` per runtime.\n\n", src, filepath.Base(runc))
	if b.hiddenV2 {
		b.printf("Hybrid cgroups: the harness ran in a private mount namespace with the cgroup2 mount at %s "+
			"detached, so all three runtimes saw a pure cgroup v1 host (crun 1.8.1 refuses hybrid mode).\n\n", unified)
	}
	for _, r := range b.rts {
		if r.name == "crun" && !b.hiddenV2 {
			h, err := startCgroupHelper(b.work)
			if err != nil {
				return err
			}
			b.helper = h
			if h != nil {
				b.printf("Hybrid cgroups: %v moved from cgroup2 to a private v1 hierarchy while the runtime "+
					"half ran (crun 1.8.1 refuses hybrid mode otherwise); every runtime ran in that state.\n\n",
					h.controllers)
			}
		}
	}
	return nil
}

// runtimeHalf measures figures (a) to (e).
func (b *bench) runtimeHalf() error {
	// Warm up page cache and the runtimes' first-run paths.
	for _, r := range b.rts {
		for i := 0; i < 3; i++ {
			if _, err := b.runOnce(r, b.bundleNet); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	start := time.Now()
	for i := 0; i < b.n; i++ {
		b.progress("\rsingle-container runs: %d/%d", i+1, b.n)
		order := rotate(b.rts, i)
		for _, r := range order {
			s, err := b.runOnce(r, b.bundleNet)
			if err != nil {
				return err
			}
			b.add("run.wall", r, ms(s.wall))
			b.add("run.cpu", r, ms(s.cpu))
			b.add("run.rss", r, mib(s.maxRSS))
		}
		for _, r := range order {
			s, err := b.runOnce(r, b.bundleNoNet)
			if err != nil {
				return err
			}
			b.add("nonet.wall", r, ms(s.wall))
			b.add("nonet.cpu", r, ms(s.cpu))
		}
		for _, r := range order {
			if err := b.lifecycle(r); err != nil {
				return err
			}
		}
	}
	b.progress(" (%s)\n", time.Since(start).Round(time.Second))
	start = time.Now()
	for i := 0; i < b.batches; i++ {
		for _, p := range b.par {
			for _, r := range rotate(b.rts, i) {
				b.progress("\rthroughput: batch %d/%d, %d parallel, %s      ", i+1, b.batches, p, r.name)
				cps, cpu, err := b.throughput(r, p)
				if err != nil {
					return err
				}
				b.add(fmt.Sprintf("tput%d", p), r, cps)
				b.add(fmt.Sprintf("tput%d.cpu", p), r, cpu)
			}
		}
	}
	b.progress(" (%s)\n", time.Since(start).Round(time.Second))
	b.reportRuntime()
	return b.hyperfineCheck(b.n)
}

func rotate(rts []*rt, i int) []*rt {
	out := make([]*rt, 0, len(rts))
	for j := range rts {
		out = append(out, rts[(i+j)%len(rts)])
	}
	return out
}

func (b *bench) add(fig string, r *rt, v float64) {
	m := b.figs[fig]
	if m == nil {
		m = map[string]series{}
		b.figs[fig] = m
	}
	m[r.name] = append(m[r.name], v)
}

func (b *bench) runOnce(r *rt, bundle string) (sample, error) {
	id := r.id()
	s, err := measure(r.argv("run", "--bundle", bundle, id), r.env)
	if err != nil {
		run(r.argv("delete", "--force", id)...)
		return s, fmt.Errorf("%s run: %w", r.name, err)
	}
	return s, nil
}

// lifecycle measures create, start, wait and delete as separate calls.
func (b *bench) lifecycle(r *rt) error {
	id := r.id()
	pidFile := filepath.Join(b.work, id+".pid")
	defer os.Remove(pidFile)
	fail := func(step string, err error) error {
		run(r.argv("delete", "--force", id)...)
		return fmt.Errorf("%s %s: %w", r.name, step, err)
	}
	create, err := measure(r.argv("create", "--bundle", b.bundleNet, "--pid-file", pidFile, id), r.env)
	if err != nil {
		return fail("create", err)
	}
	pb, err := os.ReadFile(pidFile)
	if err != nil {
		return fail("create", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pb)))
	if err != nil {
		return fail("create", fmt.Errorf("pid file: %w", err))
	}
	initHWM := vmHWM(pid)
	start, err := measureOwn(r.argv("start", id), r.env)
	if err != nil {
		return fail("start", err)
	}
	wait, ws, err := waitPid(pid)
	if errors.Is(err, unix.ECHILD) {
		// Not reparented to us: wait for it to vanish without rusage.
		for unix.Kill(pid, 0) == nil {
			time.Sleep(100 * time.Microsecond)
		}
		err = nil
	} else if err == nil && (!ws.Exited() || ws.ExitStatus() != 0) {
		err = fmt.Errorf("container: %s", describe(ws))
	}
	if err != nil {
		return fail("wait", err)
	}
	del, err := measure(r.argv("delete", id), r.env)
	if err != nil {
		return fail("delete", err)
	}
	b.add("lc.create.wall", r, ms(create.wall))
	b.add("lc.create.cpu", r, ms(create.cpu))
	b.add("lc.start.wall", r, ms(start.wall))
	b.add("lc.start.cpu", r, ms(start.cpu))
	b.add("lc.wait.wall", r, ms(wait.wall))
	b.add("lc.init.cpu", r, ms(wait.cpu))
	b.add("lc.delete.wall", r, ms(del.wall))
	b.add("lc.delete.cpu", r, ms(del.cpu))
	b.add("lc.total.wall", r, ms(create.wall+start.wall+wait.wall+del.wall))
	b.add("lc.total.cpu", r, ms(create.cpu+start.cpu+wait.cpu+del.cpu))
	b.add("rss.parent", r, mib(create.maxRSS))
	b.add("rss.init", r, mib(initHWM))
	b.add("rss.initexec", r, mib(wait.maxRSS))
	return nil
}

// throughput runs b.containers containers of /bin/true with p at a time and
// returns containers per second and the median CPU ms per container.
func (b *bench) throughput(r *rt, p int) (float64, float64, error) {
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var cpu series
	var wg sync.WaitGroup
	ids := make([]string, b.containers)
	for i := range ids {
		ids[i] = r.id()
	}
	t0 := time.Now()
	for w := 0; w < p; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				var ru unix.Rusage
				pid, errf, err := spawn(r.argv("run", "--bundle", b.bundleNet, ids[i]), r.env)
				if err == nil {
					var ws unix.WaitStatus
					for {
						_, err = unix.Wait4(pid, &ws, 0, &ru)
						if !errors.Is(err, unix.EINTR) {
							break
						}
					}
					if err == nil && (!ws.Exited() || ws.ExitStatus() != 0) {
						err = fmt.Errorf("%s run: %s: %s", r.name, describe(ws), stderrText(errf))
					}
					errf.Close()
				}
				var s sample
				s.add(&ru)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				cpu = append(cpu, ms(s.cpu))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	reapOrphans(nil)
	if firstErr != nil {
		for _, id := range ids {
			run(r.argv("delete", "--force", id)...)
		}
		return 0, 0, firstErr
	}
	return float64(len(ids)) / el.Seconds(), cpu.median(), nil
}

// cleanup force-deletes whatever containers are left, stops the cgroup
// helper, removes leftover cgroups and the work dir.
func (b *bench) cleanup() {
	b.cleanupOnce.Do(func() {
		for _, r := range b.rts {
			ents, _ := os.ReadDir(r.root)
			for _, e := range ents {
				if e.IsDir() && strings.HasPrefix(e.Name(), "cubobench-") {
					exec.Command(r.path, "--root", r.root, "delete", "--force", e.Name()).Run()
				}
			}
		}
		reapOrphans(nil)
		b.helper.stop()
		prefix := fmt.Sprintf("cubobench-%d-", os.Getpid())
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + prefix + "*")
		more, _ := filepath.Glob("/sys/fs/cgroup/*/*/" + prefix + "*")
		for _, d := range append(dirs, more...) {
			os.Remove(d)
		}
		if b.work != "" {
			os.RemoveAll(b.work)
		}
	})
}

func installDebs(want map[string]string) {
	var missing []string
	for path, pkg := range want {
		if _, err := os.Stat(path); err != nil {
			if _, err := exec.LookPath(filepath.Base(path)); err != nil {
				missing = append(missing, pkg)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "bench: installing %v from Debian\n", missing)
	cmd := exec.Command("sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "+strings.Join(missing, " "))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: apt-get install %v: %v\n", missing, err)
	}
}

func dpkgVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil {
		return "?"
	}
	return string(out)
}

func firstLine(argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "?"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func (b *bench) header(cuboRunc, cubo string) {
	cpu := "?"
	if bs, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(bs), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	var si unix.Sysinfo_t
	unix.Sysinfo(&si)
	var un unix.Utsname
	unix.Uname(&un)
	cg := "cgroup v1"
	var st unix.Statfs_t
	if b.hiddenV2 {
		cg = "hybrid: cgroup v1 + cgroup2 at " + unified + " (hidden from the runtimes, see below)"
	} else if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		cg = "cgroup v2"
	} else if unix.Statfs(unified, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		cg = fmt.Sprintf("hybrid: cgroup v1 + cgroup2 at %s holding [%s]", unified,
			strings.Join(readWords(unified+"/cgroup.controllers"), " "))
	}
	b.printf("Run %s. Command: `%s` (from %s).\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"),
		strings.Join(os.Args, " "), mustWd())
	b.printf("Machine: %s, %d CPUs, %d MiB RAM, Linux %s, %s, %s.\n\n", cpu, runtime.NumCPU(),
		si.Totalram*uint64(si.Unit)/(1<<20), unix.ByteSliceToString(un.Release[:]), cg, osRelease())
	for _, r := range b.rts {
		v := firstLine(r.path, "--version")
		extra := ""
		if r.variant && len(r.env) > len(os.Environ()) {
			extra = " with " + strings.Join(r.env[len(os.Environ()):], " ")
		}
		b.printf("- %s (%s%s): %s\n", r.name, r.path, extra, v)
	}
	b.printf("- harness: %s; %d alternated runs per figure (rotating which runtime goes first), "+
		"%d batches of %d containers per throughput figure\n\n", runtime.Version(), b.n, b.batches, b.containers)
}

func mustWd() string {
	wd, _ := os.Getwd()
	return wd
}

func osRelease() string {
	bs, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(bs), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "?"
}

// variantFlags parses -variant NAME=PATH[,ENV=VALUE...].
type variantFlags []*rt

func (v *variantFlags) String() string { return "" }

func (v *variantFlags) Set(s string) error {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" || rest == "" {
		return fmt.Errorf("want NAME=PATH[,ENV=VALUE...], got %q", s)
	}
	parts := strings.Split(rest, ",")
	path, err := filepath.Abs(parts[0])
	if err != nil {
		return err
	}
	r := &rt{name: name, path: path, variant: true}
	if len(parts) > 1 {
		r.env = append(os.Environ(), parts[1:]...)
	}
	*v = append(*v, r)
	return nil
}
