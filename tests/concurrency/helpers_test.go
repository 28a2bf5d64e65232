// Package concurrency_test runs cubo and cubo-runc many times at once: 50 parallel
// run, rm and pull of the same and different images and names, and 200 create/delete
// of cubo-runc with distinct IDs, 8 at a time. Afterwards no update is lost, no name is
// taken twice, and nothing leaks: mounts, cgroups, network namespaces, veths, iptables
// rules, runtime state, processes.
package concurrency_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const busyboxTar = "/work/shared/images/busybox-1.38.0-musl-amd64-rootfs.tar.gz"

// The default network of these tests; no other package uses the bridge or the subnet.
const (
	testBridge = "cuboy0"
	testSubnet = "10.71.0.0/24"
)

var (
	containerAddr     = regexp.MustCompile(`10\.71\.0\.[0-9]+/32`)
	perContainerChain = regexp.MustCompile(`CNI-(DN-)?[0-9a-f]{16,}`)
)

var (
	binDir string
	rng    *rand.Rand
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skip: tests/concurrency needs root (containers, overlay mounts, cgroups)")
		os.Exit(0)
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("CUBO_CRASH_SEED"), 10, 64); err == nil {
		seed = s
	}
	fmt.Printf("concurrency tests: CUBO_CRASH_SEED=%d\n", seed)
	rng = rand.New(rand.NewPCG(seed, seed))
	dir, err := os.MkdirTemp("", "cubo-conc-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, b := range []string{"cubo", "cubo-runc"} {
		// `make test` passes the binaries it built; they are copied so that a runtime
		// dir name is always cubo-runc.
		if src := os.Getenv("CUBO_BIN"); src != "" {
			if data, err := os.ReadFile(filepath.Join(src, b)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, b), data, 0o755); err != nil {
					panic(err)
				}
				continue
			}
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "../../cmd/"+b)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("go build %s: %v\n%s", b, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/cubo")
	code := m.Run()
	after, _ := filepath.Glob("/sys/fs/cgroup/*/cubo")
	for _, p := range after {
		if !slices.Contains(parents, p) {
			_ = os.Remove(p)
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one cubo root dir with busybox imported.
type env struct {
	t    *testing.T
	root string
	snap snapshot
	// seen is every container ID met under the root dir, for the cgroup leak check:
	// other packages' containers come and go meanwhile. run is called from many
	// goroutines at once, hence the lock.
	mu   sync.Mutex
	seen map[string]bool
}

var idRe = regexp.MustCompile(`[0-9a-f]{32}`)

// scan records the container IDs under the root dir now: records, creations,
// removals and runtime state.
func (e *env) scan() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range []string{"containers", "runtime/cubo-runc"} {
		ents, _ := os.ReadDir(filepath.Join(e.root, d))
		for _, x := range ents {
			if id := idRe.FindString(x.Name()); id != "" {
				e.seen[id] = true
			}
		}
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if _, err := os.Stat(busyboxTar); err != nil {
		t.Skipf("image tarball %s absent: %v", busyboxTar, err)
	}
	e := &env{t: t, root: t.TempDir(), seen: map[string]bool{}}
	e.snap = takeSnapshot(t, e.root)
	t.Cleanup(e.cleanup)
	e.ok("import", busyboxTar, "busybox:latest")
	return e
}

func (e *env) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(binDir, "cubo"), append([]string{"--root-dir", e.root}, args...)...)
	cmd.Env = append(os.Environ(), "CUBO_LOG=warn", "CUBO_DEFAULT_BRIDGE="+testBridge, "CUBO_DEFAULT_SUBNET="+testSubnet)
	return cmd
}

func (e *env) run(args ...string) (string, string, int) {
	e.t.Helper()
	cmd := e.cmd(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	e.scan()
	err := cmd.Run()
	e.scan()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("cubo %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func (e *env) ok(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("cubo %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// killAfter starts cubo with args and SIGKILLs it after d (or lets it finish first);
// it returns whether the kill came before the exit.
func (e *env) killAfter(d time.Duration, args ...string) bool {
	e.t.Helper()
	cmd := e.cmd(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		return false
	case <-time.After(d):
	}
	_ = cmd.Process.Kill()
	<-done
	e.scan()
	return cmd.ProcessState.ExitCode() == -1
}

// timed runs cubo and returns how long it took: the range random kill points come from.
func (e *env) timed(args ...string) time.Duration {
	e.t.Helper()
	start := time.Now()
	e.ok(args...)
	return time.Since(start)
}

// randDur returns a random duration in [0, max).
func randDur(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(rng.Int64N(int64(max)))
}

// check runs `cubo system check` and fails the test on any damage.
func (e *env) check() {
	e.t.Helper()
	out, errs, code := e.run("system", "check")
	if code != 0 {
		e.t.Fatalf("system check: exit %d\n%s%s", code, out, errs)
	}
}

// cleanup removes every container, collects leftovers and checks against the snapshot.
func (e *env) cleanup() {
	t := e.t
	out, _, _ := e.run("ps", "-aq")
	if ids := strings.Fields(out); len(ids) > 0 {
		if _, errs, code := e.run(append([]string{"rm", "-f"}, ids...)...); code != 0 {
			t.Errorf("cleanup rm -f: %s", errs)
		}
	}
	if out, errs, code := e.run("system", "check", "--repair"); code != 0 {
		t.Errorf("cleanup: system check --repair: exit %d\n%s%s", code, out, errs)
	}
	e.snap.assertSame(t, e.root, e.seen)
	// Whatever a test left mounted must not keep TempDir from going.
	ms := mountsUnder(e.root)
	for i := len(ms) - 1; i >= 0; i-- {
		_ = exec.Command("umount", "-l", ms[i]).Run()
	}
}

// snapshot is the machine state a test must leave as it found it.
type snapshot struct {
	cgroups []string
	links   []string
	rules   []string
}

func takeSnapshot(t *testing.T, root string) snapshot {
	t.Helper()
	var s snapshot
	s.cgroups, _ = filepath.Glob("/sys/fs/cgroup/*/cubo/*")
	s.cgroups = slices.DeleteFunc(s.cgroups, func(p string) bool {
		fi, err := os.Stat(p)
		return err != nil || !fi.IsDir()
	})
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		master, _ := os.Readlink("/sys/class/net/" + i.Name + "/master")
		if filepath.Base(master) == testBridge {
			s.links = append(s.links, i.Name)
		}
	}
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			continue
		}
		lines := strings.Split(string(out), "\n")
		// Only this package's: rules naming its subnet or bridge, and the rules of the
		// per-container chains those jump to (other packages run meanwhile).
		chains := map[string]bool{}
		for _, l := range lines {
			if strings.HasPrefix(l, "-A ") && (strings.Contains(l, "10.71.") || strings.Contains(l, testBridge)) {
				s.rules = append(s.rules, l)
				for _, c := range perContainerChain.FindAllString(l, -1) {
					chains[c] = true
				}
			}
		}
		for _, l := range lines {
			if f := strings.Fields(l); len(f) > 2 && f[0] == "-A" && chains[f[1]] && !strings.Contains(l, "10.71.") && !strings.Contains(l, testBridge) {
				s.rules = append(s.rules, l)
			}
		}
	}
	return s
}

// assertSame compares the state now with s, allowing the test's own bridge (made once,
// like docker0) to stay; processes and mounts of root must all be gone.
func (s snapshot) assertSame(t *testing.T, root string, ids map[string]bool) {
	t.Helper()
	now := takeSnapshot(t, root)
	for _, c := range now.cgroups {
		if !slices.Contains(s.cgroups, c) && ids[filepath.Base(c)] {
			t.Errorf("left behind: cgroup %s", c)
		}
	}
	for _, l := range now.links {
		if !slices.Contains(s.links, l) {
			t.Errorf("left behind: link %s on %s", l, testBridge)
		}
	}
	// The network's own rules stay with its bridge; a container's name its address
	// (/32) or its chain.
	for _, r := range now.rules {
		if !slices.Contains(s.rules, r) && (containerAddr.MatchString(r) || perContainerChain.MatchString(r)) {
			t.Errorf("left behind: iptables rule %s", r)
		}
	}
	for _, m := range mountsUnder(root) {
		if !strings.HasPrefix(m, filepath.Join(root, "images")) {
			t.Errorf("left behind: mount %s", m)
		}
	}
	if ps := processesOf(root); len(ps) > 0 {
		t.Errorf("left behind: processes %v", ps)
	}
}

// mountsUnder lists the mount points below dir.
func mountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// processesOf lists processes whose command line or working directory names root (the
// monitors, the runtimes) or whose cgroup is a container's under /cubo.
func processesOf(root string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cl, []byte(root)) {
			st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
			if strings.Contains(string(st), ") Z ") {
				continue
			}
			out = append(out, fmt.Sprintf("%d %q", pid, strings.ReplaceAll(string(cl), "\x00", " ")))
		}
	}
	return out
}

// eventually polls cond with a generous deadline: only for outcomes no command waits for
// (a detached process's exit).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
