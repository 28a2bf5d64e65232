// Package hostenv is the shared harness of the tests that kill and race cubo
// (tests/crash, tests/concurrency): a cubo root dir with busybox imported, helpers to
// run, time and kill cubo commands, and a snapshot of the machine (cgroups, links,
// iptables rules, mounts, processes) that each test must leave as it found it.
package hostenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
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

	"github.com/moby/sys/mountinfo"
)

// Config is what differs between the packages using the harness.
type Config struct {
	// BinDir holds the cubo and cubo-runc binaries under test.
	BinDir string
	// BusyboxTar is imported as busybox:latest into every Env.
	BusyboxTar string
	// Bridge and Subnet are the default network of this package's cubo runs
	// (CUBO_DEFAULT_BRIDGE, CUBO_DEFAULT_SUBNET): unique per package, so the leak
	// checks of packages running at the same time do not see each other.
	Bridge, Subnet string
}

// subnetPrefix is the first three octets of a /24 subnet and a dot ("10.71.0.").
func (c Config) subnetPrefix() string {
	i := strings.LastIndexByte(c.Subnet, '.')
	if i < 0 {
		return c.Subnet
	}
	return c.Subnet[:i+1]
}

var perContainerChain = regexp.MustCompile(`CNI-(DN-)?[0-9a-f]{16,}`)

// BinDir holds the cubo and cubo-runc binaries under test, and Rng is the
// seeded source of random kill points; Main sets both.
var (
	BinDir string
	Rng    *rand.Rand
)

// Main is the TestMain of a package using the harness, named name, whose
// cubo runs use the default bridge bridge. It skips unless root, seeds Rng
// from CUBO_CRASH_SEED (printed, so a run can be replayed), provides cubo and
// cubo-runc in BinDir (copies of $CUBO_BIN's, else built), runs the tests,
// removes the cgroup parents and the bridge that the run created, and exits.
func Main(m *testing.M, name, bridge string) {
	if os.Geteuid() != 0 {
		fmt.Printf("skip: tests/%s needs root (containers, overlay mounts, cgroups)\n", name)
		os.Exit(0)
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("CUBO_CRASH_SEED"), 10, 64); err == nil {
		seed = s
	}
	fmt.Printf("%s tests: CUBO_CRASH_SEED=%d\n", name, seed)
	Rng = rand.New(rand.NewPCG(seed, seed))
	dir, err := os.MkdirTemp("", "cubo-"+name+"-bin-")
	if err != nil {
		panic(err)
	}
	BinDir = dir
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
	_, bridgeErr := os.Stat("/sys/class/net/" + bridge)
	code := m.Run()
	// The tests' default bridge outlives their containers (as docker0 does);
	// it is this package's own, so it goes with the package's run, and so do the
	// network's iptables chains: `system check --repair` removes cubo's chains of
	// bridges that no longer exist.
	if bridgeErr != nil {
		_ = exec.Command("ip", "link", "del", bridge).Run()
		if left := sweepNetworkRules(dir, bridge); left != "" {
			fmt.Printf("left behind: %s\n", left)
			if code == 0 {
				code = 1
			}
		}
	}
	after, _ := filepath.Glob("/sys/fs/cgroup/*/cubo")
	for _, p := range after {
		if !slices.Contains(parents, p) {
			_ = os.Remove(p)
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// sweepNetworkRules runs `cubo system check --repair` on a scratch root dir under dir,
// which removes the iptables chains of bridges that are gone, and returns the
// iptables-save lines of bridge's chains still there.
func sweepNetworkRules(dir, bridge string) string {
	root := filepath.Join(dir, "sweep-root")
	cmd := exec.Command(filepath.Join(dir, "cubo"), "--root-dir", root, "system", "check", "--repair")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Sprintf("cubo system check --repair: %v: %s", err, out)
	}
	var left []string
	for _, table := range []string{"nat", "filter"} {
		out, _ := exec.Command("iptables-save", "-t", table).Output()
		for _, l := range strings.Split(string(out), "\n") {
			if networkRule(l, bridge) {
				left = append(left, table+" "+l)
			}
		}
	}
	return strings.Join(left, "; ")
}

// networkRule reports whether an iptables-save line is (or jumps to) one of the chains
// cubo makes once per network for bridge: they stay with the bridge, as docker0's do.
func networkRule(l, bridge string) bool {
	return strings.Contains(l, "CUBO-NAT-"+bridge) || strings.Contains(l, "CUBO-FWD-"+bridge)
}

// Env is one cubo root dir with busybox imported, and the machine state it must
// leave as it found it.
type Env struct {
	T    *testing.T
	Root string
	cfg  Config
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
func (e *Env) scan() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, d := range []string{"containers", "runtime/cubo-runc"} {
		ents, _ := os.ReadDir(filepath.Join(e.Root, d))
		for _, x := range ents {
			if id := idRe.FindString(x.Name()); id != "" {
				e.seen[id] = true
			}
		}
	}
}

// New makes an Env for t; it skips t when the busybox tarball is absent.
func New(t *testing.T, cfg Config) *Env {
	t.Helper()
	if _, err := os.Stat(cfg.BusyboxTar); err != nil {
		t.Skipf("image tarball %s absent: %v", cfg.BusyboxTar, err)
	}
	e := &Env{T: t, Root: t.TempDir(), cfg: cfg, seen: map[string]bool{}}
	e.snap = takeSnapshot(t, e.Root, cfg)
	t.Cleanup(e.cleanup)
	e.Ok("import", e.cfg.BusyboxTar, "busybox:latest")
	return e
}

// Cmd is a cubo command on this Env's root dir and network.
func (e *Env) Cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(e.cfg.BinDir, "cubo"), append([]string{"--root-dir", e.Root}, args...)...)
	cmd.Env = append(os.Environ(), "CUBO_LOG=warn", "CUBO_DEFAULT_BRIDGE="+e.cfg.Bridge, "CUBO_DEFAULT_SUBNET="+e.cfg.Subnet)
	return cmd
}

// Run runs cubo and returns its stdout, stderr and exit code.
func (e *Env) Run(args ...string) (string, string, int) {
	e.T.Helper()
	e.scan()
	defer e.scan()
	return Output(e.T, e.Cmd(args...))
}

// Output runs cmd and returns its stdout, stderr and exit code; the test fails if
// it cannot be run at all.
func Output(t testing.TB, cmd *exec.Cmd) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return out.String(), errb.String(), code
}

// Ok is Run that fails the test unless cubo exits 0; it returns stdout.
func (e *Env) Ok(args ...string) string {
	e.T.Helper()
	out, errs, code := e.Run(args...)
	if code != 0 {
		e.T.Fatalf("cubo %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// KillAfter starts cubo with args and SIGKILLs it after d (or lets it finish first);
// it returns whether the kill came before the exit.
func (e *Env) KillAfter(d time.Duration, args ...string) bool {
	e.T.Helper()
	cmd := e.Cmd(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.T.Fatal(err)
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

// Timed runs cubo and returns how long it took: the range random kill points come from.
func (e *Env) Timed(args ...string) time.Duration {
	e.T.Helper()
	start := time.Now()
	e.Ok(args...)
	return time.Since(start)
}

// randDur returns a random duration in [0, max).
// RandDur is a random duration in [0, max) from r.
func RandDur(r *rand.Rand, max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(max)))
}

// Check runs `cubo system check` and fails the test on any damage.
func (e *Env) Check() {
	e.T.Helper()
	out, errs, code := e.Run("system", "check")
	if code != 0 {
		e.T.Fatalf("system check: exit %d\n%s%s", code, out, errs)
	}
}

// cleanup removes every container, collects leftovers and checks against the snapshot.
func (e *Env) cleanup() {
	t := e.T
	out, _, _ := e.Run("ps", "-aq")
	if ids := strings.Fields(out); len(ids) > 0 {
		if _, errs, code := e.Run(append([]string{"rm", "-f"}, ids...)...); code != 0 {
			t.Errorf("cleanup rm -f: %s", errs)
		}
	}
	if out, errs, code := e.Run("system", "check", "--repair"); code != 0 {
		t.Errorf("cleanup: system check --repair: exit %d\n%s%s", code, out, errs)
	}
	e.snap.assertSame(t, e.Root, e.seen, e.cfg)
	// Whatever a test left mounted must not keep TempDir from going.
	ms := MountsUnder(e.Root)
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

func takeSnapshot(t *testing.T, root string, cfg Config) snapshot {
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
		if filepath.Base(master) == cfg.Bridge {
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
			if strings.HasPrefix(l, "-A ") && (strings.Contains(l, cfg.subnetPrefix()) || strings.Contains(l, cfg.Bridge)) {
				s.rules = append(s.rules, l)
				for _, c := range perContainerChain.FindAllString(l, -1) {
					chains[c] = true
				}
			}
		}
		for _, l := range lines {
			if f := strings.Fields(l); len(f) > 2 && f[0] == "-A" && chains[f[1]] && !strings.Contains(l, cfg.subnetPrefix()) && !strings.Contains(l, cfg.Bridge) {
				s.rules = append(s.rules, l)
			}
		}
	}
	return s
}

// assertSame compares the state now with s, allowing the test's own bridge (made once,
// like docker0) to stay; processes and mounts of root must all be gone.
func (s snapshot) assertSame(t *testing.T, root string, ids map[string]bool, cfg Config) {
	t.Helper()
	now := takeSnapshot(t, root, cfg)
	for _, c := range now.cgroups {
		if !slices.Contains(s.cgroups, c) && ids[filepath.Base(c)] {
			t.Errorf("left behind: cgroup %s", c)
		}
	}
	for _, l := range now.links {
		if !slices.Contains(s.links, l) {
			t.Errorf("left behind: link %s on %s", l, cfg.Bridge)
		}
	}
	// The network's own rules stay with its bridge (Main removes them with it); a
	// container's name its address (/32) or its chain.
	for _, r := range now.rules {
		if !slices.Contains(s.rules, r) && !networkRule(r, cfg.Bridge) && (strings.Contains(r, cfg.subnetPrefix()) || perContainerChain.MatchString(r)) {
			t.Errorf("left behind: iptables rule %s", r)
		}
	}
	for _, m := range MountsUnder(root) {
		if !strings.HasPrefix(m, filepath.Join(root, "images")) {
			t.Errorf("left behind: mount %s", m)
		}
	}
	if ps := ProcessesOf(root); len(ps) > 0 {
		t.Errorf("left behind: processes %v", ps)
	}
}

// MountsUnder lists the mount points below dir, in mount table order.
func MountsUnder(dir string) []string {
	ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	var out []string
	for _, m := range ms {
		if m.Mountpoint != dir {
			out = append(out, m.Mountpoint)
		}
	}
	return out
}

// ProcessesOf lists processes whose command line or working directory names root (the
// monitors, the runtimes) or whose cgroup is a container's under /cubo.
func ProcessesOf(root string) []string {
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

// Eventually polls cond with a generous deadline: only for outcomes no command waits for
// (a detached process's exit).
func Eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartRegistry serves the OCI layout at layout as busybox:latest from a
// docker-registry on 127.0.0.1, stopped when t ends, and returns its
// address; "" (and why) when docker-registry, skopeo or the layout is
// missing, for the caller to skip or do without.
func StartRegistry(t *testing.T, layout string) (addr, missing string) {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", "docker-registry not installed"
	}
	if _, err := exec.LookPath("skopeo"); err != nil {
		return "", "skopeo not installed"
	}
	if _, err := os.Stat(layout); err != nil {
		return "", fmt.Sprintf("%s absent: %v", layout, err)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	Eventually(t, "registry answering", func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if out, err := exec.Command("skopeo", "copy", "--dest-tls-verify=false", "oci:"+layout, "docker://"+addr+"/busybox:latest").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	return addr, ""
}

// Bundle makes an OCI bundle of the busybox rootfs whose process runs args
// without a terminal (cubo-runc's default spec otherwise), for driving the
// runtime directly; it returns the bundle dir.
func (e *Env) Bundle(args ...string) string {
	t := e.T
	t.Helper()
	bundle := t.TempDir()
	rootfs := filepath.Join(bundle, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xzf", e.cfg.BusyboxTar, "-C", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v %s", err, out)
	}
	if out, err := exec.Command(filepath.Join(e.cfg.BinDir, "cubo-runc"), "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("spec: %v %s", err, out)
	}
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	proc["args"] = args
	proc["terminal"] = false
	b, _ = json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}

// BuildProbe builds the test probe (tests/cmd/probe) into dir and returns its path.
// It is static (cgo off), so it runs in any container rootfs.
func BuildProbe(dir string) (string, error) {
	out := filepath.Join(dir, "probe")
	return out, goBuild(out, "github.com/cubo-dev/cubo/tests/cmd/probe", false)
}

// RuntimeUnderTest is the runtime the runtime suites drive: $CUBO_TEST_RUNTIME (any
// runc-compatible runtime, for a differential run), else $CUBO_RUNC (what `make
// test` built), else cubo-runc built into dir as `make build` does (with cgo, for
// its nsenter part). The path is absolute.
func RuntimeUnderTest(dir string) (string, error) {
	var p string
	switch {
	case os.Getenv("CUBO_TEST_RUNTIME") != "":
		lp, err := exec.LookPath(os.Getenv("CUBO_TEST_RUNTIME"))
		if err != nil {
			return "", fmt.Errorf("CUBO_TEST_RUNTIME: %w", err)
		}
		p = lp
	case os.Getenv("CUBO_RUNC") != "":
		p = os.Getenv("CUBO_RUNC")
	default:
		p = filepath.Join(dir, "cubo-runc")
		if err := goBuild(p, "github.com/cubo-dev/cubo/cmd/cubo-runc", true); err != nil {
			return "", err
		}
	}
	return filepath.Abs(p)
}

func goBuild(out, pkg string, cgo bool) error {
	gobin := "go"
	if _, err := exec.LookPath(gobin); err != nil {
		gobin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(gobin, "build", "-o", out, pkg)
	cmd.Env = os.Environ()
	if !cgo {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
